//! `modobox image build`: a bootable disk image of the whole stack, made on a Debian host
//! without a hypervisor. mmdebstrap makes the root from the distribution's packages (kernel,
//! systemd, ssh, cloud-init and every package of the chosen stack); the root is sealed
//! offline with the same sweep as `image prepare` (package scripts made SSH host keys and a
//! snakeoil key: they go) and the first-boot unit is enabled, so no identity ever exists in
//! the image: each copy's first boot installs it with its own. Then a GPT disk with a BIOS
//! boot partition, an ext4 root (mke2fs -d, no loop device) and an EFI system partition
//! (mkfs.vfat --offset, mtools), GRUB for BIOS and for UEFI (both find the root by its UUID
//! and read the same grub.cfg), and qemu-img for the output format. The output appears only
//! once complete.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{io_error, prepare, ImageError, FIRSTBOOT_UNIT};
use crate::config::Config;
use crate::distro::Distro;
use crate::install::services::services;
use crate::install::{packages, Ctx};
use crate::secrets::Secrets;
use crate::system::cmd::{self, Cmd};
use crate::system::fs::write_atomic;
use crate::system::Root;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Raw,
    Qcow2,
    Vmdk,
    Vhdx,
    /// A Vagrant box for the libvirt provider: the qcow2 image, its metadata and a Vagrantfile
    /// in one tar; the image has a `vagrant` user with Vagrant's public insecure key (which
    /// `vagrant up` replaces) and installs as mail.example.test unless told otherwise.
    VagrantLibvirt,
}

impl Format {
    fn qemu_args(self) -> &'static [&'static str] {
        match self {
            Format::Raw => &[],
            Format::Qcow2 | Format::VagrantLibvirt => &["-O", "qcow2"],
            Format::Vmdk => &["-O", "vmdk", "-o", "subformat=streamOptimized"],
            Format::Vhdx => &["-O", "vhdx", "-o", "subformat=dynamic"],
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// The image's configuration: engine and components (its hostname is a placeholder that
    /// each copy's first boot replaces).
    pub config: Config,
    pub distro: Distro,
    pub format: Format,
    pub size_bytes: u64,
    pub output: PathBuf,
    /// Debian archive and security archive (default: the host's, else deb.debian.org).
    pub mirror: String,
    pub security_mirror: String,
    /// The modobox binary put into the image (this one).
    pub binary: PathBuf,
}

/// What the build made.
#[derive(Debug)]
pub struct Built {
    pub output: PathBuf,
    pub bytes_on_disk: u64,
    pub root_bytes: u64,
    pub seconds: f64,
}

/// Host tools the build needs, with the Debian package that has each.
const TOOLS: &[(&str, &str)] = &[
    ("mmdebstrap", "mmdebstrap"),
    ("sfdisk", "fdisk"),
    ("mkfs.ext4", "e2fsprogs"),
    ("grub-mkimage", "grub-common"),
    ("mkfs.vfat", "dosfstools"),
    ("mcopy", "mtools"),
];
const GRUB_PC_DIR: &str = "/usr/lib/grub/i386-pc";
const GRUB_EFI_DIR: &str = "/usr/lib/grub/x86_64-efi";
const BIOS_BOOT_TYPE: &str = "21686148-6449-6E6F-744E-656564454649";
const LINUX_FS_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// The BIOS boot partition (GRUB's core image) and the root partition, in 512-byte sectors;
/// the EFI system partition (64 MiB, FAT32 with 512-byte clusters) comes after the root, so
/// the root keeps its place (partition 2, 2 MiB in) whatever the firmware.
const BIOS_START: u64 = 2048;
const BIOS_SECTORS: u64 = 2048;
const ROOT_START: u64 = 4096;
const ESP_SECTORS: u64 = 131072;
/// GRUB modules both core images hold: enough to find the root by UUID and read grub.cfg;
/// the rest load from /boot/grub/<platform>/ at run time.
const GRUB_MODULES: &[&str] = &[
    "part_gpt",
    "ext2",
    "search",
    "search_fs_uuid",
    "normal",
    "linux",
    "configfile",
    "serial",
    "terminal",
    "echo",
    "test",
    "gzio",
];
/// The end of a GPT disk holds the backup table: 33 sectors, rounded up to 1 MiB.
const GPT_TAIL_SECTORS: u64 = 2048;

/// Removes the work directory and a partial output however the build ends.
struct Scratch {
    dir: PathBuf,
    partial: PathBuf,
}

impl Scratch {
    /// Removes the work directory, after detaching what a killed mmdebstrap left mounted in it
    /// (removing files below a mounted /proc or /sys would fail, or worse).
    fn remove_dir(&self) {
        let _ = crate::system::fs::detach_mounts_under(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.remove_dir();
        let _ = std::fs::remove_file(&self.partial);
    }
}

/// Builds the image (see the module documentation), printing one line per stage.
pub fn build(options: &Options) -> Result<Built, ImageError> {
    let started = Instant::now();
    check_host(options)?;
    let output = &options.output;
    let name = output
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| ImageError(format!("-o {}: not a file name", output.display())))?;
    let parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if output.exists() {
        return Err(ImageError(format!(
            "-o {}: exists; remove it or choose another name",
            output.display()
        )));
    }
    let scratch = Scratch {
        dir: parent.join(format!(".{name}.build")),
        partial: parent.join(format!(".{name}.partial")),
    };
    // An earlier build that was killed left its work directory (this name is this output's).
    scratch.remove_dir();
    let rootdir = scratch.dir.join("root");
    std::fs::create_dir_all(&scratch.dir).map_err(io_error(&scratch.dir))?;
    let stages = 5;
    let stage = |n: usize, what: &str| println!("[{n}/{stages}] {what} …");

    let packages = image_packages(options);
    stage(
        1,
        &format!(
            "root file system: mmdebstrap {} with {} packages (downloads them; ≈ 2–4 minutes)",
            options.distro.facts.codename,
            packages.len()
        ),
    );
    mmdebstrap(options, &packages, &rootdir)?;
    let root = Root::new(&rootdir);

    stage(
        2,
        "sealing the root: no identity in the image, first boot enabled",
    );
    let removed = seal_root(&root, options)?;
    for line in &removed {
        println!("    removed {line}");
    }

    stage(
        3,
        "disk: GPT, BIOS boot partition, ext4 root (mke2fs -d), EFI system partition",
    );
    let raw = if options.format == Format::Raw {
        scratch.partial.clone()
    } else {
        scratch.dir.join("disk.raw")
    };
    let uuid = make_disk(&raw, &rootdir, options.size_bytes)?;
    let root_bytes = dir_size(&rootdir);

    stage(
        4,
        "bootloader: GRUB for BIOS and for UEFI (serial and screen console)",
    );
    install_grub_bios(&raw, &scratch.dir)?;
    install_grub_efi(&raw, &uuid, &scratch.dir)?;

    stage(5, "output");
    if options.format == Format::VagrantLibvirt {
        let img = scratch.dir.join("box.img");
        Cmd::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(raw.display().to_string())
            .arg(img.display().to_string())
            .run()?;
        package_box(&scratch.dir, &img, options.size_bytes, &scratch.partial)?;
    } else if options.format != Format::Raw {
        let mut c = Cmd::new("qemu-img").args(["convert", "-f", "raw"]);
        c = c.args(options.format.qemu_args().iter().copied());
        c.arg(raw.display().to_string())
            .arg(scratch.partial.display().to_string())
            .run()?;
    }
    std::fs::rename(&scratch.partial, output).map_err(io_error(output))?;
    let bytes_on_disk = allocated_bytes(output);
    drop(scratch);
    Ok(Built {
        output: output.clone(),
        bytes_on_disk,
        root_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn check_host(options: &Options) -> Result<(), ImageError> {
    let mut missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(tool, _)| !cmd::exists(tool))
        .map(|(_, package)| *package)
        .collect();
    if !Path::new(GRUB_PC_DIR).is_dir() {
        missing.push("grub-pc-bin");
    }
    if !Path::new(GRUB_EFI_DIR).is_dir() {
        missing.push("grub-efi-amd64-bin");
    }
    if options.format != Format::Raw && !cmd::exists("qemu-img") {
        missing.push("qemu-utils");
    }
    if !missing.is_empty() {
        return Err(ImageError(format!(
            "image build: missing tools on this host: apt-get install {}",
            missing.join(" ")
        )));
    }
    if options.size_bytes < 2 << 30 {
        return Err(ImageError(
            "--size: at least 2G (the stack alone is ≈ 1.5 GB)".into(),
        ));
    }
    Ok(())
}

/// The image's packages: a kernel, systemd, D-Bus, networking, ssh, cloud-init, and the stack
/// this configuration installs (the first boot then needs no download).
fn image_packages(options: &Options) -> Vec<String> {
    let mut list: Vec<String> = [
        "linux-image-amd64",
        "systemd-sysv",
        "systemd-resolved",
        "dbus",
        "udev",
        "iproute2",
        "openssh-server",
        "cloud-init",
        "ca-certificates",
        // fsck of the root at boot (not part of mmdebstrap's apt variant).
        "e2fsprogs",
        "procps",
        "less",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    list.extend(packages::wanted(&options.config, &options.distro));
    if options.format == Format::VagrantLibvirt {
        list.push("sudo".into());
    }
    list.sort();
    list.dedup();
    list
}

fn mmdebstrap(options: &Options, packages: &[String], rootdir: &Path) -> Result<(), ImageError> {
    let suite = &options.distro.facts.codename;
    let m = &options.mirror;
    let s = &options.security_mirror;
    Cmd::new("mmdebstrap")
        .args([
            "--variant=apt",
            "--mode=root",
            "--format=directory",
            "--aptopt=APT::Install-Recommends \"false\"",
            // The kernel's initramfs: generic (any virtual disk controller), made once.
            "--essential-hook=mkdir -p \"$1/etc/initramfs-tools/conf.d\" && echo MODULES=most > \"$1/etc/initramfs-tools/conf.d/modobox\"",
        ])
        .arg(format!("--include={}", packages.join(",")))
        .arg(suite.to_string())
        .arg(rootdir.display().to_string())
        .arg(format!("deb {m} {suite} main"))
        .arg(format!("deb {m} {suite}-updates main"))
        .arg(format!("deb {s} {suite}-security main"))
        .run()?;
    Ok(())
}

/// The offline seal: modobox's binary and configuration in, the per-machine items out (the
/// `image prepare` sweep), the stack's units disabled and the first boot enabled; plus what a
/// VM image needs (networking by DHCP, the root in fstab, no apt timers).
fn seal_root(root: &Root, options: &Options) -> Result<Vec<String>, ImageError> {
    let config = &options.config;
    let distro = &options.distro;
    let bin = root.path(Path::new(crate::render::context::BINARY_PATH));
    crate::system::fs::copy_atomic(&options.binary, &bin, 0o755).map_err(io_error(&bin))?;
    let conf = root.path(Path::new(crate::config::DEFAULT_PATH));
    let text = format!(
        "# modobox configuration of an image (`modobox image build`). The hostname is a \
         placeholder:\n# each copy's first boot installs with its own (cloud-init user-data \
         `modobox:`, /etc/modobox/preseed.toml, or the console).\n{}",
        config.to_toml()
    );
    write_atomic(&conf, text.as_bytes(), 0o640, None).map_err(io_error(&conf))?;

    // The stack as the packages' scripts enabled it: kept down until the first boot.
    let secrets = Secrets::load_or_generate(Path::new("/nonexistent/modobox-image-secrets"))?;
    let ctx = Ctx::new(
        config.clone(),
        PathBuf::from(crate::config::DEFAULT_PATH),
        distro.clone(),
        secrets,
    )?;
    let mut units: Vec<String> = services(&ctx)?
        .into_iter()
        .map(|s| format!("{}.service", s.unit))
        .collect();
    ctx.close();
    units.retain(|u| !u.starts_with("modobox"));
    systemctl_offline(root, "disable", &units)?;
    systemctl_offline(
        root,
        "enable",
        &[
            "systemd-networkd.service".into(),
            "systemd-resolved.service".into(),
        ],
    )?;
    for timer in ["apt-daily.timer", "apt-daily-upgrade.timer"] {
        prepare::mask(root, distro, timer)?;
    }
    let network = root.path(Path::new("/etc/systemd/network/80-modobox-dhcp.network"));
    write_atomic(
        &network,
        b"# Written by `modobox image build`: every Ethernet interface by DHCP.\n[Match]\nType=ether\n\n[Network]\nDHCP=yes\n",
        0o644,
        None,
    )
    .map_err(io_error(&network))?;
    // cloud-init reads the instance's settings; the network is networkd's (above).
    let cloud = root.path(Path::new("/etc/cloud/cloud.cfg.d/90-modobox.cfg"));
    write_atomic(
        &cloud,
        b"# Written by `modobox image build`.\nnetwork: {config: disabled}\n\
          # No locales package in the image: C.UTF-8 needs none.\nlocale: C.UTF-8\n",
        0o644,
        None,
    )
    .map_err(io_error(&cloud))?;

    if options.format == Format::VagrantLibvirt {
        vagrant_user(root)?;
    }
    let removed = prepare::remove_instance_files(root, config, distro, None, false)?;
    prepare::write_first_boot_files(root, config, distro)?;
    let marker = root.path(&super::pending_marker(config));
    write_atomic(&marker, b"sealed by `modobox image build`\n", 0o600, None)
        .map_err(io_error(&marker))?;
    systemctl_offline(root, "enable", &[FIRSTBOOT_UNIT.into()])?;
    Ok(removed)
}

/// Vagrant's published insecure public keys: `vagrant up` logs in with them once, then puts a
/// key of its own in their place. Public by design; only in Vagrant boxes.
const VAGRANT_INSECURE_KEYS: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAABIwAAAQEA6NF8iallvQVp22WDkTkyrtvp9eWW6A8YVr+kz4TjGYe7gHzIw+niNltGEFHzD8+v1I2YJ6oXevct1YeS0o9HZyN1Q9qgCgzUFtdOKLv6IedplqoPkcmF0aYet2PkEDo3MlTBckFXPITAMzF8dJSIFo9D8HfdOV0IAdx4O7PtixWKn5y2hMNG0zQPyUecp4pzC6kivAIhyfHilFR61RGL+GPXQ2MWZWFYbAGjyiYJnAmCP3NOTd0jMZEnDkbUvxhMmBYSdETk1rRgm+R4LOzFUGaHqHDLKLX+FIPKcF96hrucXzcWyLbIbEgE98OHlnVYCzRdK8jlqm8tehUc9c9WhQ== vagrant insecure public key
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN1YdxBpNlzxDqfJyw/QKow1F+wvG9hXGoqiysfJOn5Y vagrant insecure public key
";

/// The `vagrant` user (sudo without password, Vagrant's insecure keys) and a preseed: Vagrant
/// gives no cloud-init seed, and the first boot must not wait on a console nobody watches.
fn vagrant_user(root: &Root) -> Result<(), ImageError> {
    Cmd::new("useradd")
        .arg("--root")
        .arg(root.dir().display().to_string())
        .args([
            "--create-home",
            "--shell",
            "/bin/bash",
            "--groups",
            "sudo",
            "vagrant",
        ])
        .run()?;
    let (uid, gid) = passwd_ids(root, "vagrant")?;
    let ssh = root.path(Path::new("/home/vagrant/.ssh"));
    let keys = ssh.join("authorized_keys");
    write_atomic(&keys, VAGRANT_INSECURE_KEYS.as_bytes(), 0o600, None).map_err(io_error(&keys))?;
    for p in [&ssh, &keys] {
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(io_error(p))?;
    }
    std::fs::set_permissions(&ssh, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(io_error(&ssh))?;
    let sudoers = root.path(Path::new("/etc/sudoers.d/vagrant"));
    write_atomic(&sudoers, b"vagrant ALL=(ALL) NOPASSWD: ALL\n", 0o440, None)
        .map_err(io_error(&sudoers))?;
    let preseed = root.path(Path::new(super::seed::PRESEED_FILE));
    write_atomic(
        &preseed,
        b"# A Vagrant box installs as this name unless cloud-init user-data says otherwise.\n\
          hostname = \"mail.example.test\"\n",
        0o644,
        None,
    )
    .map_err(io_error(&preseed))
}

fn passwd_ids(root: &Root, user: &str) -> Result<(u32, u32), ImageError> {
    let path = root.path(Path::new("/etc/passwd"));
    let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&user) && f.len() > 3)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .ok_or_else(|| ImageError(format!("{}: no user {user}", path.display())))
}

/// A libvirt Vagrant box: `box.img`, `metadata.json` and a Vagrantfile in a tar (Vagrant also
/// takes an uncompressed box; gzip would add a minute for a few hundred MB).
pub fn package_box(dir: &Path, img: &Path, size_bytes: u64, out: &Path) -> Result<(), ImageError> {
    let metadata = serde_json::json!({
        "provider": "libvirt",
        "format": "qcow2",
        "virtual_size": size_bytes.div_ceil(1 << 30),
    });
    let meta = dir.join("metadata.json");
    write_atomic(&meta, metadata.to_string().as_bytes(), 0o644, None).map_err(io_error(&meta))?;
    let vagrantfile = dir.join("Vagrantfile");
    write_atomic(&vagrantfile, BOX_VAGRANTFILE.as_bytes(), 0o644, None)
        .map_err(io_error(&vagrantfile))?;
    let name = img
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| *n == "box.img")
        .ok_or_else(|| ImageError("a box's image must be called box.img".into()))?;
    Cmd::new("tar")
        .args(["-cf"])
        .arg(out.display().to_string())
        .arg("-C")
        .arg(dir.display().to_string())
        .args([name, "metadata.json", "Vagrantfile"])
        .run()?;
    Ok(())
}

/// The box's own Vagrantfile: libvirt settings the project's Vagrantfile may override.
const BOX_VAGRANTFILE: &str = "# Written by `modobox image build --format vagrant-libvirt`.
Vagrant.configure(\"2\") do |config|
  config.vm.synced_folder \".\", \"/vagrant\", disabled: true
  # The first boot installs the mail server before ssh starts: give it time.
  config.vm.boot_timeout = 900
  config.vm.provider :libvirt do |libvirt|
    libvirt.driver = \"kvm\"
    libvirt.memory = 2048
    libvirt.cpus = 2
    libvirt.disk_bus = \"virtio\"
  end
end
";

/// `systemctl --root`: unit files enabled or disabled in a root that is not running.
fn systemctl_offline(root: &Root, verb: &str, units: &[String]) -> Result<(), ImageError> {
    if units.is_empty() {
        return Ok(());
    }
    Cmd::new("systemctl")
        .arg(format!("--root={}", root.dir().display()))
        .args(["--quiet", "--no-reload", verb])
        .args(units.iter().cloned())
        .run()?;
    Ok(())
}

/// A sparse raw disk: GPT with a BIOS boot partition, the root partition filled from the root
/// directory by mke2fs (no loop device, no mount) and an empty FAT32 EFI system partition.
/// Returns the root file system's UUID.
fn make_disk(raw: &Path, rootdir: &Path, size: u64) -> Result<String, ImageError> {
    let file = std::fs::File::create(raw).map_err(io_error(raw))?;
    file.set_len(size).map_err(io_error(raw))?;
    drop(file);
    let sectors = size / 512;
    let root_sectors = sectors - ROOT_START - ESP_SECTORS - GPT_TAIL_SECTORS;
    let esp_start = esp_start(size);
    let script = format!(
        "label: gpt\nunit: sectors\n\
         start={BIOS_START}, size={BIOS_SECTORS}, type={BIOS_BOOT_TYPE}, name=\"bios-boot\"\n\
         start={ROOT_START}, size={root_sectors}, type={LINUX_FS_TYPE}, name=\"root\"\n\
         start={esp_start}, size={ESP_SECTORS}, type={ESP_TYPE}, name=\"efi\"\n"
    );
    Cmd::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(raw.display().to_string())
        .stdin(script)
        .run()?;
    let uuid = uuid_v4();
    write_fstab_and_grub_cfg(rootdir, &uuid)?;
    Cmd::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "modobox-root", "-U", &uuid])
        .arg("-E")
        .arg(format!("offset={}", ROOT_START * 512))
        .arg("-d")
        .arg(rootdir.display().to_string())
        .arg(raw.display().to_string())
        .arg(format!("{}k", root_sectors / 2))
        .run()?;
    Cmd::new("mkfs.vfat")
        .args(["-F", "32", "-s", "1", "-n", "EFI"])
        .arg(format!("--offset={esp_start}"))
        .arg(raw.display().to_string())
        .arg((ESP_SECTORS / 2).to_string())
        .run()?;
    Ok(uuid)
}

/// Where the EFI system partition starts on a disk of `size` bytes (sectors).
fn esp_start(size: u64) -> u64 {
    size / 512 - GPT_TAIL_SECTORS - ESP_SECTORS
}

/// A random (version 4) UUID from the OS generator.
fn uuid_v4() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    crate::system::text::uuid_v4_from(b)
}

/// fstab by UUID, and GRUB's configuration: the newest kernel, the serial console and the
/// screen (a cloud's console log reads the serial line).
fn write_fstab_and_grub_cfg(rootdir: &Path, uuid: &str) -> Result<(), ImageError> {
    let root = Root::new(rootdir);
    let fstab = root.path(Path::new("/etc/fstab"));
    write_atomic(
        &fstab,
        format!("# Written by `modobox image build`.\nUUID={uuid} / ext4 errors=remount-ro 0 1\n")
            .as_bytes(),
        0o644,
        None,
    )
    .map_err(io_error(&fstab))?;
    let boot = root.path(Path::new("/boot"));
    let mut kernels: Vec<String> = std::fs::read_dir(&boot)
        .map_err(io_error(&boot))?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with("vmlinuz-"))
        .collect();
    kernels.sort();
    let kernel = kernels
        .last()
        .ok_or_else(|| ImageError("image build: no kernel in /boot of the root".into()))?;
    let version = kernel.trim_start_matches("vmlinuz-");
    if !boot.join(format!("initrd.img-{version}")).exists() {
        return Err(ImageError(format!(
            "image build: no initrd.img-{version} in /boot of the root"
        )));
    }
    // GRUB boots /vmlinuz and /initrd.img: the kernel package moves these links to each new
    // kernel it installs (and the previous ones to *.old), so an upgraded copy boots its new
    // kernel, and still boots after the old one is removed, with no GRUB package in the image.
    for (link, target) in [
        ("vmlinuz", format!("boot/vmlinuz-{version}")),
        ("initrd.img", format!("boot/initrd.img-{version}")),
    ] {
        let path = root.path(Path::new("/").join(link).as_path());
        if std::fs::symlink_metadata(&path).is_err() {
            std::os::unix::fs::symlink(&target, &path).map_err(io_error(&path))?;
        }
    }
    let cfg = root.path(Path::new("/boot/grub/grub.cfg"));
    let text = format!(
        "# Written by `modobox image build`.\n\
         serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         set timeout=2\n\
         menuentry \"Debian with modobox\" {{\n\
         \tsearch --no-floppy --fs-uuid --set=root {uuid}\n\
         \tlinux /vmlinuz root=UUID={uuid} ro console=tty0 console=ttyS0,115200n8\n\
         \tinitrd /initrd.img\n\
         }}\n\
         menuentry \"Debian with modobox, previous kernel (after a kernel upgrade)\" {{\n\
         \tsearch --no-floppy --fs-uuid --set=root {uuid}\n\
         \tlinux /vmlinuz.old root=UUID={uuid} ro console=tty0 console=ttyS0,115200n8\n\
         \tinitrd /initrd.img.old\n\
         }}\n"
    );
    write_atomic(&cfg, text.as_bytes(), 0o644, None).map_err(io_error(&cfg))?;
    // GRUB's modules beside its configuration, for anything `normal` loads at run time.
    for (platform, dir) in [("i386-pc", GRUB_PC_DIR), ("x86_64-efi", GRUB_EFI_DIR)] {
        let modules = root.path(&Path::new("/boot/grub").join(platform));
        std::fs::create_dir_all(&modules).map_err(io_error(&modules))?;
        for e in std::fs::read_dir(dir)
            .map_err(io_error(Path::new(dir)))?
            .flatten()
        {
            let name = e.file_name();
            let n = name.to_string_lossy();
            if n.ends_with(".mod") || n.ends_with(".lst") {
                std::fs::copy(e.path(), modules.join(&name)).map_err(io_error(&e.path()))?;
            }
        }
    }
    Ok(())
}

/// GRUB for BIOS without grub-install (which needs a block device): its core image, made
/// with the modules to find the root, goes into the BIOS boot partition; boot.img into the
/// protective MBR's boot code, told where core.img starts. core.img's first sector is told
/// where the rest of it is.
fn install_grub_bios(raw: &Path, dir: &Path) -> Result<(), ImageError> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let core = dir.join("core.img");
    Cmd::new("grub-mkimage")
        .args(["-O", "i386-pc", "-p", "(hd0,gpt2)/boot/grub", "-o"])
        .arg(core.display().to_string())
        .arg("biosdisk")
        .args(GRUB_MODULES.iter().copied())
        .run()?;
    let mut core_img = std::fs::read(&core).map_err(io_error(&core))?;
    let core_sectors = (core_img.len() as u64).div_ceil(512);
    if core_sectors > BIOS_SECTORS {
        return Err(ImageError(format!(
            "GRUB's core image is {core_sectors} sectors; the BIOS boot partition holds {BIOS_SECTORS}"
        )));
    }
    // diskboot's block list (the last 12 bytes of its sector): start LBA (u64) and length
    // (u16) of the rest of core.img.
    core_img[500..508].copy_from_slice(&(BIOS_START + 1).to_le_bytes());
    core_img[508..510].copy_from_slice(&((core_sectors - 1) as u16).to_le_bytes());
    let mut boot_img = Vec::new();
    std::fs::File::open(Path::new(GRUB_PC_DIR).join("boot.img"))
        .and_then(|mut f| f.read_to_end(&mut boot_img))
        .map_err(io_error(Path::new(GRUB_PC_DIR)))?;
    if boot_img.len() != 512 {
        return Err(ImageError("GRUB's boot.img is not one sector".into()));
    }
    // boot.img's kernel sector (offset 0x5c, u64): where core.img starts.
    boot_img[0x5c..0x64].copy_from_slice(&BIOS_START.to_le_bytes());
    let mut disk = std::fs::OpenOptions::new()
        .write(true)
        .open(raw)
        .map_err(io_error(raw))?;
    // Only the boot code (440 bytes): the partition table after it stays.
    disk.seek(SeekFrom::Start(0))
        .and_then(|_| disk.write_all(&boot_img[..440]))
        .and_then(|_| disk.seek(SeekFrom::Start(BIOS_START * 512)))
        .and_then(|_| disk.write_all(&core_img))
        .and_then(|_| disk.sync_all())
        .map_err(io_error(raw))?;
    Ok(())
}

/// GRUB for UEFI: one EFI program at the removable-media path (`\\EFI\\BOOT\\BOOTX64.EFI`,
/// which firmware boots without an NVRAM entry) whose built-in configuration finds the root
/// by UUID (the disk's number differs between firmwares) and then reads the same grub.cfg.
/// Not signed: Secure Boot must be off.
fn install_grub_efi(raw: &Path, uuid: &str, dir: &Path) -> Result<(), ImageError> {
    let early = dir.join("grub-efi-early.cfg");
    let text =
        format!("search --no-floppy --fs-uuid --set=root {uuid}\nset prefix=($root)/boot/grub\n");
    write_atomic(&early, text.as_bytes(), 0o644, None).map_err(io_error(&early))?;
    let efi = dir.join("BOOTX64.EFI");
    Cmd::new("grub-mkimage")
        .args(["-O", "x86_64-efi", "-p", "/boot/grub", "-c"])
        .arg(early.display().to_string())
        .arg("-o")
        .arg(efi.display().to_string())
        .args(["fat", "efi_gop"])
        .args(GRUB_MODULES.iter().copied())
        .run()?;
    let size = std::fs::metadata(raw).map_err(io_error(raw))?.len();
    // mtools addresses a partition inside a disk file as FILE@@BYTE_OFFSET.
    let fat = format!("{}@@{}", raw.display(), esp_start(size) * 512);
    Cmd::new("mmd")
        .args(["-i", &fat, "::/EFI", "::/EFI/BOOT"])
        .run()?;
    Cmd::new("mcopy")
        .args(["-i", &fat])
        .arg(efi.display().to_string())
        .arg("::/EFI/BOOT/BOOTX64.EFI")
        .run()?;
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}
