//! The api's OCI image, assembled byte for byte here: one gzip layer (the static binary, a CA
//! bundle, a passwd entry for the unprivileged user), its config and its manifest.
//!
//! Reproducible: entries are written in a fixed order with fixed owners, modes and times, gzip
//! gets no timestamp, and the JSON documents are serialized with sorted keys. The same binary
//! gives the same digest on every machine, so an unchanged api changes nothing in the stack.
//!
//! Why `serde_json` values rather than the `oci-spec` crate's types: the four documents (layer
//! descriptor, config, manifest, index) have a handful of fields the OCI image spec fixes, and
//! the digest depends on their exact bytes, which sorted `Value` keys give directly. `oci-spec`
//! builds each through `derive_builder`, `getset` and `strum` (three more proc-macro crates in
//! xtask's build) for no check this module lacks: the image test pushes the result to a real
//! registry and reads it back with skopeo and umoci, which validate it against the spec.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use flate2::{Compression, GzBuilder};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Where the binary lives in the image, and the image's entrypoint.
pub const ENTRYPOINT: &str = "/usr/local/bin/api";
/// The CA bundle the AWS SDK's TLS reads (`SSL_CERT_FILE` points at it).
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The unprivileged user the api runs as (the distroless `nonroot` numbering).
pub const USER_ID: u32 = 65532;

/// A content-addressed blob: its bytes and `sha256:<hex>`.
#[derive(Debug, Clone)]
pub struct Blob {
    pub bytes: Vec<u8>,
    pub digest: String,
}

impl Blob {
    pub fn new(bytes: Vec<u8>) -> Self {
        let digest = sha256_digest(&bytes);
        Self { bytes, digest }
    }

    fn descriptor(&self, media_type: &str) -> Value {
        json!({ "mediaType": media_type, "digest": self.digest, "size": self.bytes.len() })
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// An image ready to push: manifest, config and layer blobs.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest: Blob,
    pub config: Blob,
    pub layer: Blob,
    /// `amd64` or `arm64` (the OCI/Go names).
    pub architecture: String,
}

impl Image {
    /// The manifest digest: what the registry serves and the task definition names.
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    /// The tag pushed with it: the digest's first 12 hex digits. A repository with immutable
    /// tags accepts it exactly once per content.
    pub fn tag(&self) -> String {
        tag_for(self.digest())
    }

    /// Writes an OCI image layout (`oci-layout`, `index.json`, `blobs/`) to `dir`, naming the
    /// image `ref_name`: what skopeo, umoci and crane read.
    pub fn write_layout(&self, dir: &Path, ref_name: &str) -> Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        let blobs = dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs)?;
        for blob in [&self.manifest, &self.config, &self.layer] {
            let hex = blob.digest.trim_start_matches("sha256:");
            std::fs::write(blobs.join(hex), &blob.bytes)?;
        }
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let mut descriptor = self.manifest.descriptor(MANIFEST_MEDIA_TYPE);
        descriptor["annotations"] = json!({ "org.opencontainers.image.ref.name": ref_name });
        let index = json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [descriptor] });
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
        Ok(())
    }
}

pub fn tag_for(digest: &str) -> String {
    digest
        .trim_start_matches("sha256:")
        .chars()
        .take(12)
        .collect()
}

/// What goes into the image besides the binary.
#[derive(Debug)]
pub struct Contents<'a> {
    pub binary: &'a [u8],
    pub architecture: &'a str,
    pub port: u16,
    pub version: &'a str,
}

/// Builds the image from a static `api` binary.
pub fn build(contents: &Contents<'_>) -> Result<Image> {
    let tar = layer_tar(contents.binary)?;
    let diff_id = sha256_digest(&tar);
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    gz.write_all(&tar)?;
    let layer = Blob::new(gz.finish()?);
    let config = Blob::new(serde_json::to_vec(&config_json(contents, &diff_id))?);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config.descriptor(CONFIG_MEDIA_TYPE),
        "layers": [layer.descriptor(LAYER_MEDIA_TYPE)],
    });
    Ok(Image {
        manifest: Blob::new(serde_json::to_vec(&manifest)?),
        config,
        layer,
        architecture: contents.architecture.to_owned(),
    })
}

fn config_json(contents: &Contents<'_>, diff_id: &str) -> Value {
    let mut image = json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": contents.architecture,
        "os": "linux",
        "config": {
            "User": format!("{USER_ID}:{USER_ID}"),
            "Entrypoint": [ENTRYPOINT],
            "Env": [
                "PATH=/usr/local/bin",
                format!("SSL_CERT_FILE={CA_BUNDLE}"),
            ],
            "WorkingDir": "/",
            "ExposedPorts": { format!("{}/tcp", contents.port): {} },
            "Labels": {
                "org.opencontainers.image.title": "tollgate-api",
                "org.opencontainers.image.version": contents.version,
            },
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    });
    if contents.architecture == "arm64" {
        image["variant"] = json!("v8");
    }
    image
}

/// The one layer: directories, `/etc/passwd` and `/etc/group` naming the unprivileged user,
/// the CA bundle, and the binary. No shell, no package manager, nothing else.
fn layer_tar(binary: &[u8]) -> Result<Vec<u8>> {
    let passwd = format!(
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{USER_ID}:{USER_ID}:nonroot:/home/nonroot:/sbin/nologin\n"
    );
    let group = format!("root:x:0:\nnonroot:x:{USER_ID}:\n");
    let ca_bundle = ca_bundle_pem();
    let mut tar = tar::Builder::new(Vec::new());
    for dir in [
        "etc/",
        "etc/ssl/",
        "etc/ssl/certs/",
        "home/",
        "usr/",
        "usr/local/",
        "usr/local/bin/",
    ] {
        append(&mut tar, dir, tar::EntryType::Directory, 0o755, 0, &[])?;
    }
    append(
        &mut tar,
        "home/nonroot/",
        tar::EntryType::Directory,
        0o700,
        USER_ID,
        &[],
    )?;
    append(&mut tar, "tmp/", tar::EntryType::Directory, 0o1777, 0, &[])?;
    append(
        &mut tar,
        "etc/passwd",
        tar::EntryType::Regular,
        0o644,
        0,
        passwd.as_bytes(),
    )?;
    append(
        &mut tar,
        "etc/group",
        tar::EntryType::Regular,
        0o644,
        0,
        group.as_bytes(),
    )?;
    append(
        &mut tar,
        CA_BUNDLE.trim_start_matches('/'),
        tar::EntryType::Regular,
        0o644,
        0,
        ca_bundle.as_bytes(),
    )?;
    append(
        &mut tar,
        ENTRYPOINT.trim_start_matches('/'),
        tar::EntryType::Regular,
        0o755,
        0,
        binary,
    )?;
    Ok(tar.into_inner()?)
}

fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    owner: u32,
    data: &[u8],
) -> Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_path(path)?;
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(owner.into());
    header.set_gid(owner.into());
    header.set_mtime(0);
    header.set_size(data.len() as u64);
    header.set_cksum();
    tar.append(&header, data)
        .with_context(|| format!("cannot add {path} to the image layer"))
}

/// Mozilla's root CAs as one PEM file, from the `webpki-root-certs` crate: pinned by
/// Cargo.lock, so the bundle (and the image digest) does not depend on the building machine.
fn ca_bundle_pem() -> String {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut pem = String::new();
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        let b64 = engine.encode(cert.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

/// Checks that `binary` is a statically linked Linux ELF executable for `architecture`: the
/// image has no dynamic loader and no libc to lend it.
pub fn check_static_elf(binary: &[u8], architecture: &str) -> Result<()> {
    let expected_machine: u16 = match architecture {
        "arm64" => 0xb7,
        "amd64" => 0x3e,
        other => bail!("no image architecture `{other}`: arm64 or amd64"),
    };
    if binary.len() < 64 || &binary[..4] != b"\x7fELF" || binary[4] != 2 || binary[5] != 1 {
        bail!("the api binary is not a 64-bit little-endian ELF file");
    }
    let u16_at = |at: usize| u16::from_le_bytes([binary[at], binary[at + 1]]);
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&binary[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let machine = u16_at(18);
    if machine != expected_machine {
        bail!(
            "the api binary is for ELF machine {machine:#x}, not {architecture} ({expected_machine:#x})"
        );
    }
    let (phoff, phentsize, phnum) = (u64_at(32) as usize, u16_at(54) as usize, u16_at(56));
    for i in 0..usize::from(phnum) {
        let at = phoff + i * phentsize;
        if at + 4 > binary.len() {
            bail!("the api binary's program headers are truncated");
        }
        const PT_INTERP: u32 = 3;
        let kind = u32::from_le_bytes([binary[at], binary[at + 1], binary[at + 2], binary[at + 3]]);
        if kind == PT_INTERP {
            bail!(
                "the api binary is dynamically linked (it names a program interpreter): build it for a *-linux-musl target"
            );
        }
    }
    Ok(())
}

/// A one-line summary for progress output.
pub fn describe(image: &Image) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "linux/{} {} (layer {:.1} MB compressed)",
        image.architecture,
        image.digest(),
        image.layer.bytes.len() as f64 / 1e6
    );
    s
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn fake_static_arm64() -> Vec<u8> {
        let mut elf = vec![0u8; 128];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[18..20].copy_from_slice(&0xb7u16.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&1u16.to_le_bytes());
        elf[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        elf
    }

    fn contents(binary: &[u8]) -> Contents<'_> {
        Contents {
            binary,
            architecture: "arm64",
            port: 8080,
            version: "0.1.0",
        }
    }

    #[test]
    fn the_same_binary_gives_the_same_digest_and_another_binary_another() {
        let binary = fake_static_arm64();
        let a = build(&contents(&binary)).expect("build");
        let b = build(&contents(&binary)).expect("build");
        assert_eq!(a.digest(), b.digest());
        let mut changed = binary.clone();
        changed.push(0);
        let c = build(&contents(&changed)).expect("build");
        assert_ne!(a.digest(), c.digest());
    }

    #[test]
    fn the_manifest_names_its_blobs_by_their_real_digests_and_sizes() {
        let image = build(&contents(&fake_static_arm64())).expect("build");
        let manifest: Value = serde_json::from_slice(&image.manifest.bytes).expect("json");
        assert_eq!(
            manifest["config"]["digest"],
            format!("sha256:{:x}", Sha256::digest(&image.config.bytes))
        );
        assert_eq!(manifest["layers"][0]["size"], image.layer.bytes.len());
        let config: Value = serde_json::from_slice(&image.config.bytes).expect("json");
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(image.layer.bytes.as_slice())
            .read_to_end(&mut tar)
            .expect("gunzip");
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            format!("sha256:{:x}", Sha256::digest(&tar))
        );
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(config["architecture"], "arm64");
    }

    #[test]
    fn the_layer_holds_the_binary_executable_and_nothing_runs_as_root() {
        let binary = fake_static_arm64();
        let image = build(&contents(&binary)).expect("build");
        let mut archive =
            tar::Archive::new(flate2::read::GzDecoder::new(image.layer.bytes.as_slice()));
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").display().to_string();
            if path == ENTRYPOINT.trim_start_matches('/') {
                assert_eq!(entry.header().mode().expect("mode"), 0o755);
                let mut body = Vec::new();
                entry.read_to_end(&mut body).expect("read");
                assert_eq!(body, binary);
            }
            assert!(!path.starts_with("bin/") && !path.contains("sh"), "{path}");
            seen.push(path);
        }
        for needed in [
            "etc/passwd",
            "etc/ssl/certs/ca-certificates.crt",
            "usr/local/bin/api",
            "tmp/",
        ] {
            assert!(
                seen.iter().any(|p| p == needed),
                "{needed} missing: {seen:?}"
            );
        }
    }

    #[test]
    fn the_ca_bundle_is_a_pem_list_of_every_root() {
        let pem = ca_bundle_pem();
        assert_eq!(
            pem.matches("-----BEGIN CERTIFICATE-----").count(),
            webpki_root_certs::TLS_SERVER_ROOT_CERTS.len()
        );
        assert!(webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() > 100);
    }

    #[test]
    fn only_a_static_binary_of_the_right_architecture_is_accepted() {
        let good = fake_static_arm64();
        check_static_elf(&good, "arm64").expect("static arm64");
        let err = check_static_elf(&good, "amd64").expect_err("wrong machine");
        assert!(err.to_string().contains("not amd64"), "{err}");
        let mut dynamic = good.clone();
        dynamic[64..68].copy_from_slice(&3u32.to_le_bytes());
        let err = check_static_elf(&dynamic, "arm64").expect_err("PT_INTERP");
        assert!(err.to_string().contains("dynamically linked"), "{err}");
        assert!(check_static_elf(b"#!/bin/sh\n", "arm64").is_err());
    }
}
