//! `modobox image prepare` and `modobox image firstboot` (see `crate::image`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::{Global, ImageBuildArgs, ImageCommand, ImageFormatArg, InstallArgs};
use crate::config::Config;
use crate::distro::Distro;
use crate::image::{self, firstboot, prepare, seed};
use crate::system::Root;

pub fn image(global: &Global, command: &ImageCommand) -> Result<ExitCode> {
    if uzers::get_effective_uid() != 0 {
        bail!("modobox image: run as root");
    }
    match command {
        ImageCommand::Prepare { force } => prepare_command(global, *force),
        ImageCommand::Firstboot => firstboot_command(global),
        ImageCommand::Build(args) => build_command(global, args),
    }
}

/// The image's distribution is `--distro` (default debian:12), not the host's.
fn build_command(global: &Global, args: &ImageBuildArgs) -> Result<ExitCode> {
    use crate::image::build::{self, Format};
    let id: crate::distro::DistroId = match &global.distro {
        Some(d) => d.clone(),
        None => "debian:12".parse().map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    if id.id != "debian" || !["12", "13"].contains(&id.version.as_str()) {
        bail!("--distro {id}: images are built for debian:12 or debian:13");
    }
    let distro = Distro::load(&id)?;
    // The hostname is a placeholder: every copy's first boot installs with its own.
    let mut config = Config::new(crate::names::Hostname::parse(
        "hostname",
        "mail.example.com",
    )?);
    super::install::set_stack(&mut config, args.database, &args.without)?;
    config.validate()?;
    let (host_mirror, host_security) = host_mirrors();
    let options = build::Options {
        config,
        distro,
        format: match args.format {
            ImageFormatArg::Raw => Format::Raw,
            ImageFormatArg::Qcow2 => Format::Qcow2,
            ImageFormatArg::Vmdk => Format::Vmdk,
            ImageFormatArg::Vhdx => Format::Vhdx,
            ImageFormatArg::VagrantLibvirt => Format::VagrantLibvirt,
        },
        size_bytes: parse_size(&args.size)?,
        output: args.output.clone(),
        mirror: args.mirror.clone().unwrap_or(host_mirror),
        security_mirror: args.security_mirror.clone().unwrap_or(host_security),
        binary: std::env::current_exe()?,
    };
    let built = build::build(&options)?;
    println!(
        "built {}: {:.1} GB on disk (root file system {:.1} GB, virtual disk {}) in {:.0} s",
        built.output.display(),
        built.bytes_on_disk as f64 / 1e9,
        built.root_bytes as f64 / 1e9,
        args.size,
        built.seconds
    );
    println!(
        "Boot it with a NoCloud seed (cloud-init user-data with a `modobox:` section) or answer the \
         questions on its console; each copy gets its own identity at its first boot."
    );
    Ok(ExitCode::SUCCESS)
}

/// `8G`, `512M`, `1T` or bytes.
fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let (number, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("--size {text:?}: a number with G, M or T (e.g. 8G)"))?;
    let factor: u64 = match unit
        .to_ascii_uppercase()
        .trim_end_matches('B')
        .trim_end_matches('I')
    {
        "" => 1,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => bail!("--size {text:?}: a number with G, M or T (e.g. 8G)"),
    };
    n.checked_mul(factor)
        .ok_or_else(|| anyhow::anyhow!("--size {text:?}: too large"))
}

/// The Debian archives this host uses (apt's sources), so the image comes from the same
/// mirror; deb.debian.org otherwise.
fn host_mirrors() -> (String, String) {
    let mut uris = Vec::new();
    let mut files = vec![std::path::PathBuf::from("/etc/apt/sources.list")];
    if let Ok(d) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<_> = d.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("deb ") {
                let uri = rest.split_whitespace().find(|w| w.contains("://"));
                uris.extend(uri.map(str::to_string));
            } else if let Some(rest) = line.strip_prefix("URIs:") {
                uris.extend(rest.split_whitespace().map(str::to_string));
            }
        }
    }
    let pick = |security: bool, default: &str| {
        uris.iter()
            .find(|u| u.contains("debian") && u.contains("security") == security)
            .map(|u| u.trim_end_matches('/').to_string())
            .unwrap_or_else(|| default.to_string())
    };
    (
        pick(false, "http://deb.debian.org/debian"),
        pick(true, "http://deb.debian.org/debian-security"),
    )
}

fn prepare_command(global: &Global, force: bool) -> Result<ExitCode> {
    let distro = Distro::resolve(global.distro.as_ref())?;
    let sealed = prepare::prepare(&global.config, &distro, prepare::Options { force })?;
    if !sealed.disabled.is_empty() {
        println!(
            "stopped, and kept from starting until the first boot: {}",
            sealed.disabled.join(", ")
        );
    }
    if sealed.removed.is_empty() {
        println!("already sealed: nothing to remove");
    } else {
        println!("removed:");
        for line in &sealed.removed {
            println!("  {line}");
        }
    }
    println!(
        "sealed: {} runs at the next boot of every copy. Power off now and copy the disk \
         (booting this machine again makes it a new instance too).",
        image::FIRSTBOOT_UNIT
    );
    Ok(ExitCode::SUCCESS)
}

fn firstboot_command(global: &Global) -> Result<ExitCode> {
    let config = Config::load(&global.config)?;
    let marker = image::pending_marker(&config);
    if !marker.exists() {
        println!(
            "first boot: already done ({} is absent); nothing to do",
            marker.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let distro = Distro::resolve(global.distro.as_ref())?;
    match first_boot(global, &config) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            let stopped = prepare::stop_stack(&global.config, &distro);
            let message = format!(
                "\nmodobox first boot FAILED: {e:#}\nThe mail services and ssh stay down. Fix the \
                 cause (settings: cloud-init user-data `modobox:` or {}), then run `modobox image \
                 firstboot` as root on this console, or reboot.\n",
                seed::PRESEED_FILE
            );
            firstboot::tell_console(&message);
            if let Err(s) = stopped {
                eprintln!("stopping the stack after the failure: {s}");
            }
            Err(e)
        }
    }
}

fn first_boot(global: &Global, config: &Config) -> Result<()> {
    let root = Root::host();
    let instance = match seed::from_files(&root)? {
        Some(i) => i,
        None => match seed::from_console(Path::new(image::CONSOLE), seed::CONSOLE_TIMEOUT)? {
            Some(i) => i,
            None => bail!(
                "no settings for this instance: no cloud-init user-data with a `modobox:` \
                 section or an fqdn, no NoCloud seed, no {} and no answer on the console",
                seed::PRESEED_FILE
            ),
        },
    };
    println!(
        "first boot: this instance is {} (domain {}, admin {}), from {}",
        instance.hostname, instance.domain, instance.admin_address, instance.source
    );
    for made in firstboot::make_host_keys()? {
        println!("first boot: made {made}");
    }
    firstboot::set_hostname(&instance.hostname)?;
    let args = InstallArgs {
        hostname: Some(instance.hostname.to_string()),
        domain: Some(instance.domain.to_string()),
        admin_address: Some(instance.admin_address.to_string()),
        yes: true,
        credentials_file: Some(image::CREDENTIALS_FILE.into()),
        ..InstallArgs::default()
    };
    super::install::install(global, &args, false)?;
    firstboot::finish(config, &super::runtime()?)?;
    if let Ok(text) = std::fs::read_to_string(image::CREDENTIALS_FILE) {
        firstboot::tell_console(&format!(
            "\nmodobox is ready. First login (also in {}, readable by root only):\n{text}\n",
            image::CREDENTIALS_FILE
        ));
    }
    println!("first boot: done; it will not run again");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("8G").unwrap(), 8 << 30);
        assert_eq!(super::parse_size("16384M").unwrap(), 16 << 30);
        assert_eq!(super::parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(super::parse_size("4096").unwrap(), 4096);
        for bad in ["", "G", "8X", "-1G", "99999999999T"] {
            assert!(super::parse_size(bad).is_err(), "{bad}");
        }
    }
}
