//! `modobox image prepare` and `modobox image firstboot` (see `crate::image`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::{Global, ImageCommand, InstallArgs};
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
    }
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
