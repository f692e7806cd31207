//! A UDP DNS server on loopback for the tests (answers from a table the test edits): the
//! check_mx job's and the antispam tests' DNS.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, MX, TXT};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

/// What the test server answers for a (name, type).
#[derive(Debug, Clone)]
pub enum Answer {
    Records(Vec<RData>),
    /// NOERROR with no record (the name exists, not this type).
    NoData,
}

#[derive(Default)]
pub struct Zone {
    pub table: HashMap<(String, RecordType), Answer>,
    /// Every (name, type) asked, in order.
    pub asked: Vec<(String, RecordType)>,
}

pub type SharedZone = Arc<Mutex<Zone>>;

/// A UDP DNS server on 127.0.0.1: names not in the table are NXDOMAIN. `silent`: reads
/// queries and never answers (a dead resolver).
pub async fn dns_server(zone: SharedZone, silent: bool) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(q) = query.queries.first().cloned() else {
                continue;
            };
            let name = q.name().to_ascii().to_lowercase();
            let rtype = q.query_type();
            let answer = {
                let mut z = zone.lock().unwrap();
                z.asked.push((name.clone(), rtype));
                z.table.get(&(name.clone(), rtype)).cloned()
            };
            if silent {
                continue;
            }
            let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
            reply.metadata.message_type = MessageType::Response;
            reply.metadata.recursion_desired = query.metadata.recursion_desired;
            reply.metadata.recursion_available = true;
            reply.add_query(q.clone());
            match answer {
                Some(Answer::Records(rdata)) => {
                    for r in rdata {
                        reply.add_answer(Record::from_rdata(q.name().clone(), 60, r));
                    }
                }
                Some(Answer::NoData) => {}
                None => reply.metadata.response_code = ResponseCode::NXDomain,
            }
            let bytes = reply.to_vec().unwrap();
            let _ = socket.send_to(&bytes, peer).await;
        }
    });
    addr
}

pub fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

impl Zone {
    pub fn set(&mut self, name: &str, rtype: RecordType, answer: Answer) {
        self.table.insert((fqdn(name), rtype), answer);
    }
    pub fn remove(&mut self, name: &str, rtype: RecordType) {
        self.table.remove(&(fqdn(name), rtype));
    }
    pub fn mx(&mut self, domain: &str, host: &str) {
        let exchange = Name::from_ascii(fqdn(host)).unwrap();
        self.set(
            domain,
            RecordType::MX,
            Answer::Records(vec![RData::MX(MX::new(10, exchange))]),
        );
    }
    pub fn a(&mut self, host: &str, ips: &[&str]) {
        let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = ips
            .iter()
            .map(|i| i.parse::<IpAddr>().unwrap())
            .partition(IpAddr::is_ipv4);
        let to_a = |ips: Vec<IpAddr>| -> Answer {
            if ips.is_empty() {
                return Answer::NoData;
            }
            Answer::Records(
                ips.into_iter()
                    .map(|ip| match ip {
                        IpAddr::V4(a) => RData::A(A(a)),
                        IpAddr::V6(a) => RData::AAAA(AAAA(a)),
                    })
                    .collect(),
            )
        };
        self.set(host, RecordType::A, to_a(v4));
        self.set(host, RecordType::AAAA, to_a(v6));
    }
    /// One TXT record (split into 255-byte strings as DNS requires).
    pub fn txt(&mut self, name: &str, value: &str) {
        let parts: Vec<String> = value
            .as_bytes()
            .chunks(255)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        self.set(
            name,
            RecordType::TXT,
            Answer::Records(vec![RData::TXT(TXT::new(parts))]),
        );
    }
}
