//! The hub's certificate authority and a server certificate for the addresses clients use.
//! The CA is generated per run, kept in a data dir, or brought with `--ca-cert/--ca-key`.
//! The CA (never its key) is written to `ca.pem`, in a fresh temporary directory removed when
//! the emulator stops, or in the data dir; clients trust it through `NODE_EXTRA_CA_CERTS` or a
//! `ca` option.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

use crate::errors::StartError;
use crate::x509::AnyClientCert;

/// Removes the temporary directory holding `ca.pem` on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn create() -> std::io::Result<Self> {
        for _ in 0..16 {
            let dir = std::env::temp_dir().join(format!(
                "iothub-emulator-{}-{:08x}",
                std::process::id(),
                fastrand::u32(..)
            ));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(TempDir(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other(
            "could not create a temporary directory",
        ))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Tls {
    pub config: Arc<ServerConfig>,
    pub ca_path: PathBuf,
    pub ca_pem: String,
    /// The server certificate's key (PEM), for a data dir to keep.
    pub server_key_pem: String,
    /// The server certificate (PEM): Azurite serves with it too (`--storage azurite`).
    pub server_cert_pem: String,
    _dir: Option<TempDir>,
}

/// A certificate authority: certificate and key, PEM. The key is a secret: no `Debug`.
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
}

fn generation_error(e: rcgen::Error) -> String {
    format!("certificate generation failed: {e}")
}

impl Ca {
    pub fn generate() -> Result<Self, StartError> {
        let err = generation_error;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "iothub-emulator local CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().map_err(err)?;
        let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
        Ok(Self {
            cert_pem: ca_cert.pem(),
            key_pem: ca_key.serialize_pem(),
        })
    }

    /// Reads `--ca-cert` and `--ca-key`: a CA certificate and the key it was issued for.
    pub fn read(cert_path: &Path, key_path: &Path) -> Result<Self, StartError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let ca = Self {
            cert_pem: read(cert_path)?,
            key_pem: read(key_path)?,
        };
        ca.check().map_err(|e| {
            format!(
                "--ca-cert {} / --ca-key {}: {e}",
                cert_path.display(),
                key_path.display()
            )
        })?;
        Ok(ca)
    }

    /// A usable pair: a CA certificate (PEM), a private key (PKCS#8 PEM), and the key is the
    /// certificate's.
    pub fn check(&self) -> Result<(), StartError> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(self.cert_pem.as_bytes())
            .ok()
            .filter(|(_, pem)| pem.label == "CERTIFICATE")
            .ok_or("the certificate is not a PEM certificate")?;
        let cert = pem
            .parse_x509()
            .map_err(|e| format!("the certificate cannot be read: {e}"))?;
        if !cert.is_ca() {
            return Err(
                "the certificate is not a CA certificate (basicConstraints CA:TRUE)".into(),
            );
        }
        let key = self.key_pair()?;
        if *cert.public_key().subject_public_key.data != *key.public_key_raw() {
            return Err("the key does not belong to the certificate".into());
        }
        Ok(())
    }

    fn key_pair(&self) -> Result<KeyPair, StartError> {
        KeyPair::from_pem(&self.key_pem).map_err(|_| {
            StartError::new("the key is not a PEM private key (PKCS#8) rcgen can sign with")
        })
    }
}

/// Where `ca.pem` goes.
pub enum CaFile {
    /// A fresh temporary directory, removed on drop.
    Temporary,
    /// This path, written at every start (a data dir: the path stays the same).
    Write(PathBuf),
    /// This file already holds the certificate (`--ca-cert`).
    Existing(PathBuf),
}

/// A root CA (issuer = subject), which a server leaves out of the chain it sends.
fn is_self_signed(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der)
        .is_ok_and(|(_, cert)| cert.subject().as_raw() == cert.issuer().as_raw())
}

/// A fresh CA and a server certificate, `ca.pem` in a temporary directory.
pub fn generate(host: &str, alias: Option<&str>) -> Result<Tls, StartError> {
    serve(host, alias, &Ca::generate()?, None, CaFile::Temporary)
}

/// A server certificate for 127.0.0.1, ::1, localhost, `host` and the `--hostname` alias,
/// signed by `ca`, with `server_key_pem` (or a new key), and `ca.pem` where `ca_file` says.
/// The server asks clients for a certificate (x509 devices) but requires none.
pub fn serve(
    host: &str,
    alias: Option<&str>,
    ca: &Ca,
    server_key_pem: Option<&str>,
    ca_file: CaFile,
) -> Result<Tls, StartError> {
    let err = generation_error;

    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    for name in std::iter::once(host).chain(alias) {
        let bare = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if !names.contains(&bare) && !bare.is_empty() && bare != "0.0.0.0" && bare != "::" {
            names.push(bare);
        }
    }
    let mut leaf_params = CertificateParams::new(names).map_err(err)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "iothub-emulator");
    leaf_params.use_authority_key_identifier_extension = true;
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = match server_key_pem {
        Some(pem) => KeyPair::from_pem(pem).map_err(err)?,
        None => KeyPair::generate().map_err(err)?,
    };
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca.key_pair()?)
        .map_err(|e| format!("the CA certificate cannot be used: {e}"))?;
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer).map_err(err)?;
    let ca_der = x509_parser::pem::parse_x509_pem(ca.cert_pem.as_bytes())
        .map_err(|_| "the CA certificate is not PEM".to_string())?
        .1
        .contents;

    // The chain as IoT Hub sends it: the leaf and any intermediate, never the root. A client
    // that does not trust the CA then fails on the leaf (`UNABLE_TO_VERIFY_LEAF_SIGNATURE`, what
    // Microsoft's server_validation e2e tests expect), not on a self-signed certificate in the
    // chain. A `--ca-cert` that is itself an intermediate is sent along.
    let mut chain = vec![CertificateDer::from(leaf_cert.der().to_vec())];
    if !is_self_signed(&ca_der) {
        chain.push(CertificateDer::from(ca_der));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_client_cert_verifier(Arc::new(AnyClientCert::new(&provider)))
        .with_single_cert(
            chain,
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];

    let write = |path: &Path| {
        std::fs::write(path, &ca.cert_pem)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    let (ca_path, dir) = match ca_file {
        CaFile::Temporary => {
            let dir = TempDir::create()
                .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
            let path = dir.path().join("ca.pem");
            write(&path)?;
            (path, Some(dir))
        }
        CaFile::Write(path) => {
            write(&path)?;
            (path, None)
        }
        CaFile::Existing(path) => (path, None),
    };
    let ca_path = std::fs::canonicalize(&ca_path).unwrap_or(ca_path);
    Ok(Tls {
        config: Arc::new(config),
        ca_path,
        ca_pem: ca.cert_pem.clone(),
        server_key_pem: leaf_key.serialize_pem(),
        server_cert_pem: leaf_cert.pem(),
        _dir: dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_ca_and_removes_it_on_drop() {
        let tls = generate("127.0.0.1", Some("myhub.local")).unwrap();
        assert!(tls.ca_path.is_absolute());
        let pem = std::fs::read_to_string(&tls.ca_path).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(!pem.contains("PRIVATE KEY"));
        let path = tls.ca_path.clone();
        drop(tls);
        assert!(!path.exists());
    }
}
