//! x509 device certificates, service side.
//!
//! The TLS front door asks every client for a certificate but requires none (`AnyClientCert`):
//! SAS devices and HTTPS clients send none and are unaffected, and a device that sends one has
//! only proven that it holds the certificate's key. Whether that certificate admits the device
//! is the hub's rule (`auth::Authenticator::check_device_login`), using what is here: the
//! thumbprint of a self-signed device's certificate, or a chain to a CA given with
//! `--device-ca` (standing in for the portal's verified CA certificates).

use std::path::PathBuf;
use std::sync::Arc;

use crate::errors::StartError;
use sha1::{Digest as _, Sha1};
use sha2::{Digest as _, Sha256};
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::{
    verify_tls13_signature_with_raw_key, CryptoProvider, WebPkiSupportedAlgorithms,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, SubjectPublicKeyInfoDer, UnixTime};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error as TlsError, PeerMisbehaved,
    RootCertStore, SignatureScheme,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;

/// The certificate chain a client sent in the TLS handshake (leaf first; empty when none).
pub type CertChain = Arc<[CertificateDer<'static>]>;

/// Accepts any client certificate, or none, after checking the handshake signature (so the
/// client holds the certificate's key). The hub decides later what the certificate is worth.
#[derive(Debug)]
pub struct AnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AnyClientCert {
    pub fn new(provider: &CryptoProvider) -> Self {
        Self {
            algorithms: provider.signature_verification_algorithms,
        }
    }

    /// Checks the handshake signature with the leaf's public key, read with x509-parser: rustls's
    /// own `verify_tls1x_signature` parse the leaf with webpki, which refuses X.509 v1
    /// certificates (`UnsupportedCertVersion`), and v1 is what Microsoft's samples and e2e suite
    /// make (the `pem` package: `openssl x509 -req` without extensions) and IoT Hub accepts.
    fn verify_with_leaf_key(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
        tls13: bool,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        let (_, leaf) = X509Certificate::from_der(cert.as_ref())
            .map_err(|_| TlsError::InvalidCertificate(CertificateError::BadEncoding))?;
        if tls13 {
            let spki = SubjectPublicKeyInfoDer::from(leaf.public_key().raw);
            return verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algorithms);
        }
        // TLS 1.2's ECDSA schemes name no curve: every algorithm of the scheme is tried, as
        // rustls's `verify_tls12_signature` does.
        let algorithms = self
            .algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algorithms)| *algorithms)
            .ok_or(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme)?;
        let key = &leaf.public_key().subject_public_key.data;
        algorithms
            .iter()
            .any(|alg| alg.verify_signature(key, message, dss.signature()).is_ok())
            .then(HandshakeSignatureValid::assertion)
            .ok_or(TlsError::InvalidCertificate(CertificateError::BadSignature))
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, TlsError> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.verify_with_leaf_key(message, cert, dss, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.verify_with_leaf_key(message, cert, dss, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The CAs the hub trusts for `certificateAuthority` devices (`--device-ca`, repeatable).
#[derive(Default)]
pub struct DeviceCas {
    /// rustls's own WebPKI chain check (signatures, validity, client-auth usage) over the CAs:
    /// chains through intermediates, but only of X.509 v3 certificates.
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// The CAs themselves, for leaves they signed directly, of any version (`signed_by_a_ca`).
    cas: Vec<CertificateDer<'static>>,
}

impl DeviceCas {
    /// Loads every certificate of every PEM file; errors are one line naming the file.
    pub fn load(paths: &[PathBuf], provider: Arc<CryptoProvider>) -> Result<Self, StartError> {
        if paths.is_empty() {
            return Ok(Self::default());
        }
        let mut roots = RootCertStore::empty();
        let mut cas = Vec::new();
        for path in paths {
            let name = path.display();
            let pem = std::fs::read(path).map_err(|e| format!("--device-ca {name}: {e}"))?;
            let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("--device-ca {name}: not a PEM certificate file ({e})"))?;
            if certs.is_empty() {
                return Err(StartError::new(format!(
                    "--device-ca {name}: no certificate in the file"
                )));
            }
            for cert in certs {
                roots
                    .add(cert.clone())
                    .map_err(|e| format!("--device-ca {name}: unusable certificate ({e})"))?;
                cas.push(cert);
            }
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("--device-ca: {e}"))?;
        Ok(Self {
            verifier: Some(verifier),
            cas,
        })
    }

    /// True when `chain` (leaf first) leads to one of the trusted CAs, valid now.
    pub fn trusts(&self, chain: &[CertificateDer<'_>]) -> bool {
        let (Some(verifier), Some((leaf, intermediates))) = (&self.verifier, chain.split_first())
        else {
            return false;
        };
        verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .is_ok()
            || self.signed_by_a_ca(leaf)
    }

    /// True when a trusted CA signed `leaf` directly and both are valid now, whatever the leaf's
    /// X.509 version: webpki refuses v1 leaves (`UnsupportedCertVersion`), which IoT Hub accepts
    /// and Microsoft's samples make (`openssl x509 -req` without extensions).
    fn signed_by_a_ca(&self, leaf: &CertificateDer<'_>) -> bool {
        let Ok((_, leaf)) = X509Certificate::from_der(leaf.as_ref()) else {
            return false;
        };
        leaf.validity().is_valid()
            && self.cas.iter().any(|ca| {
                X509Certificate::from_der(ca.as_ref()).is_ok_and(|(_, ca)| {
                    ca.subject() == leaf.issuer()
                        && ca.validity().is_valid()
                        && leaf.verify_signature(Some(ca.public_key())).is_ok()
                })
            })
    }
}

/// True when `thumbprint` (hex, any case, `:` separators allowed) is the SHA-1 of the
/// certificate's DER, which is what IoT Hub and every device SDK sample compute, or its SHA-256,
/// which the service accepts too.
pub fn thumbprint_matches(cert: &CertificateDer<'_>, thumbprint: &str) -> bool {
    let wanted: String = thumbprint
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    match wanted.len() {
        40 => hex(&Sha1::digest(cert.as_ref())) == wanted,
        64 => hex(&Sha256::digest(cert.as_ref())) == wanted,
        _ => false,
    }
}

/// The subject's common name, which must be the device id for a CA-signed device.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use tokio_rustls::rustls::client::ResolvesClientCert;
    use tokio_rustls::rustls::sign::CertifiedKey;

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(tokio_rustls::rustls::crypto::ring::default_provider())
    }

    fn leaf(cn: &str, issuer: Option<&Issuer<'_, KeyPair>>) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = match issuer {
            Some(issuer) => params.signed_by(&key, issuer).unwrap(),
            None => params.self_signed(&key).unwrap(),
        };
        cert.der().clone()
    }

    fn ca(cn: &str) -> (String, Issuer<'static, KeyPair>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        (pem, Issuer::new(params, key))
    }

    #[test]
    fn thumbprints_are_sha1_or_sha256_hex_of_the_der() {
        let cert = leaf("dev1", None);
        let sha1: String = Sha1::digest(cert.as_ref())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        assert!(thumbprint_matches(&cert, &sha1));
        assert!(thumbprint_matches(&cert, &sha1.to_lowercase()));
        let colons: Vec<String> = sha1
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        assert!(thumbprint_matches(&cert, &colons.join(":")));
        let sha256: String = Sha256::digest(cert.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(thumbprint_matches(&cert, &sha256));
        assert!(!thumbprint_matches(&leaf("dev1", None), &sha1));
        assert!(!thumbprint_matches(&cert, ""));
        assert_eq!(common_name(&cert).as_deref(), Some("dev1"));
    }

    #[derive(Debug)]
    struct Fixed(Arc<CertifiedKey>);

    impl ResolvesClientCert for Fixed {
        fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }

        fn has_certs(&self) -> bool {
            true
        }
    }

    /// One TLS handshake against the emulator's server config over an in-memory pipe; the chain
    /// the server saw, or the server's error.
    async fn handshake(
        client_auth: Option<(CertificateDer<'static>, KeyPair)>,
    ) -> Result<Vec<CertificateDer<'static>>, String> {
        handshake_over(tokio_rustls::rustls::DEFAULT_VERSIONS, client_auth).await
    }

    /// `handshake` with the client limited to `versions` (TLS 1.2 checks signatures its own way).
    async fn handshake_over(
        versions: &[&'static tokio_rustls::rustls::SupportedProtocolVersion],
        client_auth: Option<(CertificateDer<'static>, KeyPair)>,
    ) -> Result<Vec<CertificateDer<'static>>, String> {
        use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
        use tokio_rustls::rustls::ClientConfig;
        let server = crate::tls::generate("127.0.0.1", None).unwrap();
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(server.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let client = match client_auth {
            None => builder.with_no_client_auth(),
            // A resolver, not `with_client_auth_cert`, which would refuse a key that does not
            // match the certificate before the server could.
            Some((cert, key)) => {
                let key = provider()
                    .key_provider
                    .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                        key.serialize_der(),
                    )))
                    .unwrap();
                builder.with_client_cert_resolver(Arc::new(Fixed(Arc::new(CertifiedKey::new(
                    vec![cert],
                    key,
                )))))
            }
        };
        let (a, b) = tokio::io::duplex(64 * 1024);
        let accept = tokio_rustls::TlsAcceptor::from(server.config.clone()).accept(a);
        let connect = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), b);
        let (accepted, connected) = tokio::join!(accept, async {
            let mut tls = connect.await?;
            // TLS 1.3: the server reads the client's certificate after the client finishes.
            tokio::io::AsyncWriteExt::write_all(&mut tls, b"x").await?;
            Ok::<_, std::io::Error>(tls)
        });
        let _keep = connected;
        let tls = accepted.map_err(|e| e.to_string())?;
        Ok(tls
            .get_ref()
            .1
            .peer_certificates()
            .unwrap_or_default()
            .to_vec())
    }

    #[tokio::test]
    async fn the_front_door_asks_for_a_certificate_and_checks_possession_only() {
        // No certificate: SAS devices and HTTPS clients are unaffected.
        assert_eq!(handshake(None).await.unwrap(), []);
        // Any certificate, even one no CA signed, with its own key: the hub decides later.
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "dev1");
        let cert = params.self_signed(&key).unwrap().der().clone();
        assert_eq!(
            handshake(Some((cert.clone(), key))).await.unwrap(),
            std::slice::from_ref(&cert)
        );
        // The certificate with another key: the handshake signature does not verify.
        let err = handshake(Some((cert, KeyPair::generate().unwrap())))
            .await
            .unwrap_err();
        assert!(err.contains("ignature"), "{err}");
    }

    /// A file of `tests/fixtures/x509v1` (X.509 v1 certificates made with openssl; see its README).
    fn v1_fixture(name: &str) -> String {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/x509v1/");
        std::fs::read_to_string(format!("{dir}{name}")).unwrap()
    }

    fn v1_cert(name: &str) -> CertificateDer<'static> {
        let cert =
            CertificateDer::from_pem_slice(v1_fixture(&format!("{name}.pem")).as_bytes()).unwrap();
        let (_, parsed) = X509Certificate::from_der(cert.as_ref()).unwrap();
        assert_eq!(parsed.version(), x509_parser::x509::X509Version::V1);
        cert
    }

    #[tokio::test]
    async fn v1_certificates_pass_the_front_door() {
        use tokio_rustls::rustls::version::{TLS12, TLS13};
        for (name, version) in [("self", &TLS13), ("leaf", &TLS13), ("self", &TLS12)] {
            let cert = v1_cert(name);
            let key = KeyPair::from_pem(&v1_fixture(&format!("{name}.key"))).unwrap();
            assert_eq!(
                handshake_over(&[version], Some((cert.clone(), key)))
                    .await
                    .unwrap(),
                std::slice::from_ref(&cert)
            );
            let err = handshake_over(&[version], Some((cert, KeyPair::generate().unwrap())))
                .await
                .unwrap_err();
            assert!(err.contains("ignature"), "{err}");
        }
    }

    #[test]
    fn a_v1_leaf_signed_by_a_trusted_ca_is_trusted() {
        let dir = crate::tls::TempDir::create().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, v1_fixture("ca.pem")).unwrap();
        let cas = DeviceCas::load(std::slice::from_ref(&path), provider()).unwrap();
        assert!(cas.trusts(&[v1_cert("leaf")]));
        assert!(!cas.trusts(&[v1_cert("self")]));
        // Another CA of the same name did not sign it.
        let (other_pem, _) = ca("v1-test-ca");
        std::fs::write(&path, other_pem).unwrap();
        let other = DeviceCas::load(std::slice::from_ref(&path), provider()).unwrap();
        assert!(!other.trusts(&[v1_cert("leaf")]));
    }

    #[test]
    fn chains_to_a_trusted_ca_only() {
        let dir = crate::tls::TempDir::create().unwrap();
        let (trusted_pem, trusted) = ca("trusted root");
        let (_, other) = ca("other root");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, trusted_pem).unwrap();
        let cas = DeviceCas::load(std::slice::from_ref(&path), provider()).unwrap();
        assert!(cas.trusts(&[leaf("dev1", Some(&trusted))]));
        assert!(!cas.trusts(&[leaf("dev1", Some(&other))]));
        assert!(!cas.trusts(&[leaf("dev1", None)]));
        assert!(!cas.trusts(&[]));
        assert!(!DeviceCas::default().trusts(&[leaf("dev1", Some(&trusted))]));

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here").unwrap();
        for bad in [dir.path().join("missing.pem"), empty] {
            let e = DeviceCas::load(&[bad], provider())
                .err()
                .unwrap()
                .to_string();
            assert!(e.starts_with("--device-ca ") && !e.contains('\n'), "{e}");
        }
    }
}
