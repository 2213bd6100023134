//! A certificate authority generated per run, and a leaf for the addresses clients use.
//! The CA (never its key) is written to a fresh temporary directory; clients trust it through
//! `NODE_EXTRA_CA_CERTS` or a `ca` option. The directory is removed when the emulator stops.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

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
    _dir: TempDir,
}

/// Generates the CA and a leaf for 127.0.0.1, ::1, localhost, `host` and the `--hostname`
/// alias, and writes `ca.pem`. The server asks clients for a certificate (x509 devices) but
/// requires none.
pub fn generate(host: &str, alias: Option<&str>) -> Result<Tls, String> {
    let err = |e: rcgen::Error| format!("certificate generation failed: {e}");
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
    let leaf_key = KeyPair::generate().map_err(err)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer).map_err(err)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_client_cert_verifier(Arc::new(AnyClientCert::new(&provider)))
        .with_single_cert(
            vec![
                CertificateDer::from(leaf_cert.der().to_vec()),
                CertificateDer::from(ca_cert.der().to_vec()),
            ],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];

    let dir = TempDir::create().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let ca_path = dir.path().join("ca.pem");
    let ca_pem = ca_cert.pem();
    std::fs::write(&ca_path, &ca_pem)
        .map_err(|e| format!("cannot write {}: {e}", ca_path.display()))?;
    let ca_path = std::fs::canonicalize(&ca_path).unwrap_or(ca_path);
    Ok(Tls {
        config: Arc::new(config),
        ca_path,
        ca_pem,
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
