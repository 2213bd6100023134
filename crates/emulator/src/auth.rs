//! Service-side checking of `Authorization` headers: SAS tokens signed with a shared access
//! policy key, and bearer tokens listed on the command line.
//!
//! Re-implemented from the service's point of view (no code shared with the client crates):
//! `sig = base64(HMAC-SHA256(base64decode(policyKey), sr + "\n" + se))`. Clients disagree on
//! whether `sr` is url-encoded before signing (azure-iothub signs it raw, device SDKs signed it
//! encoded), so both forms are accepted. Nothing here ever logs or echoes a key or signature.

use std::collections::HashMap;
use std::fmt;
use std::sync::RwLock;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use crate::events::{EventsCondition, EventsError};

use tokio_rustls::rustls::pki_types::CertificateDer;

use crate::devices::Credentials;
use crate::errors::{ApiError, ErrorCode};
use crate::x509::{self, DeviceCas};

/// What JavaScript's `encodeURIComponent` leaves alone.
pub(crate) const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// A shared access policy: a name and its (decoded) key.
#[derive(Clone)]
pub struct Policy {
    pub name: String,
    key: Vec<u8>,
    /// The key's text as bytes: Event Hubs (and so the events endpoint's clients) sign with
    /// the key as written, where IoT Hub signs with its base64-decoded bytes.
    text_key: Vec<u8>,
}

impl Policy {
    /// `key` is the base64 text as it appears in a connection string.
    pub fn new(name: impl Into<String>, key_base64: &str) -> Self {
        Self {
            name: name.into(),
            key: lenient_base64(key_base64),
            text_key: key_base64.as_bytes().to_vec(),
        }
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The fields of a `SharedAccessSignature` token, percent-decoded.
#[derive(PartialEq, Eq)]
pub struct SasToken {
    /// `sr` exactly as it appeared in the token (may or may not be url-encoded).
    pub sr_raw: String,
    pub sr: String,
    pub sig: String,
    pub skn: Option<String>,
    pub se: u64,
}

impl fmt::Debug for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasToken")
            .field("sr", &self.sr)
            .field("skn", &self.skn)
            .field("se", &self.se)
            .field("sig", &"<redacted>")
            .finish()
    }
}

fn decode(v: &str) -> String {
    percent_decode_str(v).decode_utf8_lossy().into_owned()
}

/// Parses `SharedAccessSignature sr=…&sig=…&skn=…&se=…` (field order free, `skn` optional).
pub fn parse_sas(header: &str) -> Result<SasToken, &'static str> {
    let rest = header
        .trim()
        .strip_prefix("SharedAccessSignature")
        .ok_or("not a SharedAccessSignature")?;
    if !rest.starts_with(char::is_whitespace) {
        return Err("malformed SharedAccessSignature");
    }
    let (mut sr, mut sig, mut skn, mut se) = (None, None, None, None);
    for field in rest.trim().split('&') {
        let (k, v) = field
            .split_once('=')
            .ok_or("malformed SharedAccessSignature field")?;
        match k {
            "sr" => sr = Some(v),
            "sig" => sig = Some(decode(v)),
            "skn" => skn = Some(decode(v)),
            "se" => se = Some(v),
            _ => {}
        }
    }
    let sr_raw = sr.ok_or("SharedAccessSignature is missing sr")?;
    let se = se.ok_or("SharedAccessSignature is missing se")?;
    Ok(SasToken {
        sr_raw: sr_raw.to_string(),
        sr: decode(sr_raw),
        sig: sig.ok_or("SharedAccessSignature is missing sig")?,
        skn: skn.filter(|s| !s.is_empty()),
        se: decode(se)
            .parse()
            .map_err(|_| "SharedAccessSignature se is not a number")?,
    })
}

/// True when `sig_base64` is the HMAC-SHA256 of `sr + "\n" + se` under `key` for one of the
/// spellings of `sr` that clients sign (as sent, decoded, or `encodeURIComponent`-ed).
pub fn signature_matches(key: &[u8], token: &SasToken) -> bool {
    let Ok(sig) = STANDARD.decode(token.sig.trim()) else {
        return false;
    };
    let encoded = utf8_percent_encode(&token.sr, URI_COMPONENT).to_string();
    let encoded_lower = utf8_percent_encode(&token.sr.to_lowercase(), URI_COMPONENT).to_string();
    let mut candidates: Vec<&str> = vec![&token.sr_raw, &token.sr, &encoded, &encoded_lower];
    candidates.dedup();
    candidates.iter().any(|sr| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            return false;
        };
        mac.update(sr.as_bytes());
        mac.update(b"\n");
        mac.update(token.se.to_string().as_bytes());
        // verify_slice compares in constant time.
        mac.verify_slice(&sig).is_ok()
    })
}

/// Node's forgiving base64 decoder, which is what clients use on `SharedAccessKey`:
/// both alphabets, stops at `=`, skips anything else, ignores leftover bits.
pub fn lenient_base64(text: &str) -> Vec<u8> {
    let mut clean: String = text
        .chars()
        .take_while(|&c| c != '=')
        .filter_map(|c| match c {
            '-' => Some('+'),
            '_' => Some('/'),
            c if c.is_ascii_alphanumeric() || c == '+' || c == '/' => Some(c),
            _ => None,
        })
        .collect();
    if clean.len() % 4 == 1 {
        clean.pop(); // a lone trailing sextet carries no whole byte
    }
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone),
    );
    LENIENT.decode(clean).unwrap_or_default()
}

/// Checks `Authorization` headers for one hub.
pub struct Authenticator {
    /// Lower-cased names this hub answers to (`127.0.0.1:N`, `localhost:N`, …).
    hub_names: Vec<String>,
    policies: Vec<Policy>,
    bearer_tokens: Vec<String>,
    /// Tokens already verified, with their expiry. Clients reuse one token for many calls, and
    /// skipping the HMAC for them is a large share of the per-request cost. Bounded.
    verified: RwLock<HashMap<String, u64>>,
    /// The CAs trusted for `certificateAuthority` devices (`--device-ca`).
    device_cas: DeviceCas,
}

/// Verified tokens remembered at most (the cache is emptied when full).
const VERIFIED_CACHE: usize = 4096;

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("hub_names", &self.hub_names)
            .field("policies", &self.policies)
            .field(
                "bearer_tokens",
                &format_args!("[{} redacted]", self.bearer_tokens.len()),
            )
            .finish()
    }
}

fn unauthorized(text: &str) -> ApiError {
    ApiError::new(
        ErrorCode::IotHubUnauthorizedAccess,
        format!("Unauthorized: {text}"),
    )
}

impl Authenticator {
    pub fn new(hub_names: Vec<String>, policies: Vec<Policy>, bearer_tokens: Vec<String>) -> Self {
        Self {
            hub_names: hub_names.into_iter().map(|h| h.to_lowercase()).collect(),
            policies,
            bearer_tokens,
            verified: RwLock::new(HashMap::new()),
            device_cas: DeviceCas::default(),
        }
    }

    /// Trusts these CAs for `certificateAuthority` devices.
    pub fn with_device_cas(mut self, device_cas: DeviceCas) -> Self {
        self.device_cas = device_cas;
        self
    }

    /// Verifies a header value; `now_secs` is real wall-clock time (token expiry is not emulated).
    pub fn check(&self, header: Option<&str>, now_secs: u64) -> Result<(), ApiError> {
        let header =
            header.ok_or_else(|| unauthorized("the request has no Authorization header"))?;
        if let Some(token) = header.strip_prefix("Bearer ") {
            let token = token.trim().as_bytes();
            // Compare every listed token fully so timing does not reveal a prefix match.
            let ok: bool = self
                .bearer_tokens
                .iter()
                .fold(Choice::from(0), |acc, t| acc | t.as_bytes().ct_eq(token))
                .into();
            return if ok {
                Ok(())
            } else {
                Err(unauthorized("the bearer token is not accepted by this hub"))
            };
        }
        let cached = crate::locks::read(&self.verified).get(header).copied();
        if cached.is_some_and(|se| se > now_secs) {
            return Ok(());
        }
        let token = parse_sas(header).map_err(unauthorized)?;
        self.verify_policy_token(&token, now_secs, |p| &p.key)?;
        let mut verified = crate::locks::write(&self.verified);
        if verified.len() >= VERIFIED_CACHE {
            verified.clear();
        }
        verified.insert(header.to_string(), token.se);
        Ok(())
    }
}

impl Authenticator {
    /// A shared access policy's token: it names this hub (`sr`, after any scheme), has not
    /// expired, names a policy (`skn`) and is signed with the key `key_of` gives.
    fn verify_policy_token(
        &self,
        token: &SasToken,
        now_secs: u64,
        key_of: impl Fn(&Policy) -> &[u8],
    ) -> Result<(), ApiError> {
        // An Event Hubs client names its resource as a URL (`sb://{host}/{entity}`), uamqp
        // the hub as `https://{host}`: the host follows the scheme.
        let resource = token.sr.split_once("://").map_or(&token.sr[..], |(_, r)| r);
        let resource_host = resource
            .split('/')
            .next()
            .unwrap_or_default()
            .to_lowercase();
        if !self.hub_names.contains(&resource_host) {
            return Err(unauthorized(
                "the SharedAccessSignature resource (sr) does not name this hub",
            ));
        }
        if token.se <= now_secs {
            return Err(unauthorized("the SharedAccessSignature has expired"));
        }
        let skn = token
            .skn
            .as_deref()
            .ok_or_else(|| unauthorized("the SharedAccessSignature names no policy (skn)"))?;
        let policy = self
            .policies
            .iter()
            .find(|p| p.name == skn)
            .ok_or_else(|| unauthorized("the SharedAccessSignature names an unknown policy"))?;
        if !signature_matches(key_of(policy), token) {
            return Err(unauthorized(
                "the SharedAccessSignature signature does not match",
            ));
        }
        Ok(())
    }

    /// A policy token for the events endpoint, signed as Event Hubs clients sign (with the
    /// key's text); the error names what is wrong, never the token.
    pub fn check_events_token(&self, token: &str, now_secs: u64) -> Result<(), EventsError> {
        let unauthorized = |text: String| EventsError::new(EventsCondition::Unauthorized, text);
        let token = parse_sas(token).map_err(|e| unauthorized(format!("Unauthorized: {e}")))?;
        self.verify_policy_token(&token, now_secs, |p| &p.text_key)
            .map_err(|e| unauthorized(e.message))
    }

    /// The hub's rule for a device login, whatever the transport: a SAS `password` for a `sas`
    /// device; for an x509 device no password but the certificate chain the client sent in the
    /// TLS handshake (leaf first), whose leaf has one of the device's thumbprints
    /// (`selfSigned`), or names the device (CN) and chains to a trusted CA
    /// (`certificateAuthority`).
    pub fn check_device_login(
        &self,
        device_id: &str,
        credentials: Credentials,
        password: &str,
        client_chain: &[CertificateDer<'_>],
        now_secs: u64,
    ) -> Result<(), &'static str> {
        let leaf = || {
            client_chain
                .first()
                .ok_or("the device uses x509 authentication but sent no client certificate")
        };
        match credentials {
            Credentials::Keys(grants) => self.check_device(password, &grants, now_secs),
            Credentials::Thumbprints(thumbprints) => {
                let leaf = leaf()?;
                if thumbprints
                    .iter()
                    .flatten()
                    .any(|t| x509::thumbprint_matches(leaf, t))
                {
                    Ok(())
                } else {
                    Err("the client certificate's thumbprint is not the device's")
                }
            }
            Credentials::CertificateAuthority => {
                if x509::common_name(leaf()?).as_deref() != Some(device_id) {
                    Err("the client certificate's common name is not the device id")
                } else if !self.device_cas.trusts(client_chain) {
                    Err("the client certificate does not chain to a CA the hub trusts (--device-ca)")
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Verifies a device-side client's SAS password: a token for one of the client's
    /// `grants` (`{hub}/{resource}`), signed with that grant's keys, or with a policy's key
    /// when it names the policy (`skn`; then the hub itself may be the resource). The error
    /// text names what is wrong, never the token.
    pub fn check_device(
        &self,
        password: &str,
        grants: &[(String, [String; 2])],
        now_secs: u64,
    ) -> Result<(), &'static str> {
        let token = parse_sas(password)?;
        let (host, path) = token.sr.split_once('/').unwrap_or((&token.sr, ""));
        if !self.hub_names.contains(&host.to_lowercase()) {
            return Err("the token's resource (sr) does not name this hub");
        }
        let grant = grants
            .iter()
            .find(|(resource, _)| path.eq_ignore_ascii_case(resource));
        if grant.is_none() && !(path.is_empty() && token.skn.is_some()) {
            return Err("the token's resource (sr) does not name this device or module");
        }
        if token.se <= now_secs {
            return Err("the token has expired");
        }
        let ok = match (token.skn.as_deref(), grant) {
            (Some(skn), _) => self
                .policies
                .iter()
                .any(|p| p.name == skn && signature_matches(&p.key, &token)),
            (None, Some((_, keys))) => keys
                .iter()
                .any(|k| signature_matches(&lenient_base64(k), &token)),
            (None, None) => false,
        };
        if ok {
            Ok(())
        } else {
            Err("the token's signature does not match")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four known `create(sr, skn, key, se)` vectors, plus the
    /// token azure-iothub sends from a connection string at a frozen clock.
    const VECTORS: &[(&str, Option<&str>, &str, u64, &str)] = &[
        ("host", Some("policy"), "key", 12345,
         "SharedAccessSignature sr=host&sig=88JmrIsVYOGmRSjCO1x1LLbv0K001Gikh1rjfJqbQXA%3D&skn=policy&se=12345"),
        ("myhub.azure-devices.net", Some("iothubowner"), "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", 1700000000,
         "SharedAccessSignature sr=myhub.azure-devices.net&sig=sJAIZTF5oG40VHrie96heZ865%2BnR4QavBvHnzxZm8rk%3D&skn=iothubowner&se=1700000000"),
        ("MyHub.Azure-Devices.net", Some("my policy (1)!*'"), "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", 4102444800,
         "SharedAccessSignature sr=MyHub.Azure-Devices.net&sig=MLiUXS9L0xv4Hvhud1MM%2BtNS1OCKfxAj1vivfvGmK0Q%3D&skn=my%20policy%20%281%29%21%2a%27&se=4102444800"),
        ("h.azure-devices.net", None, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", 1700000000,
         "SharedAccessSignature sr=h.azure-devices.net&sig=2OKt4%2BY0%2B6cqcTg9nowxljYyZyhM3Q5Yo3lToHFIa4Q%3D&se=1700000000"),
        ("myhub.azure-devices.net", Some("iothubowner"), "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", 1700003601,
         "SharedAccessSignature sr=myhub.azure-devices.net&sig=zjBNBNz1v32aH%2B3GMeKqgApksZZaAhMhRDSjEiydoM8%3D&skn=iothubowner&se=1700003601"),
    ];

    #[test]
    fn reference_vectors_parse_and_verify_service_side() {
        for &(sr, skn, key, se, token) in VECTORS {
            let parsed = parse_sas(token).unwrap();
            assert_eq!(parsed.sr, sr);
            assert_eq!(parsed.skn.as_deref(), skn);
            assert_eq!(parsed.se, se);
            assert!(signature_matches(&lenient_base64(key), &parsed), "{token}");
            // A different key must not verify.
            assert!(!signature_matches(b"another key", &parsed));
        }
    }

    #[test]
    fn reference_vectors_pass_the_full_check_when_the_policy_exists() {
        for &(sr, skn, key, se, token) in VECTORS {
            let policies = skn.map(|n| vec![Policy::new(n, key)]).unwrap_or_default();
            let auth = Authenticator::new(vec![sr.to_string()], policies, vec![]);
            let result = auth.check(Some(token), se - 10);
            match skn {
                Some(_) => assert_eq!(result, Ok(()), "{token}"),
                // Without skn a service cannot pick a policy: rejected.
                None => assert_eq!(
                    result.unwrap_err().code,
                    ErrorCode::IotHubUnauthorizedAccess
                ),
            }
        }
    }

    fn auth() -> Authenticator {
        Authenticator::new(
            vec!["myhub.azure-devices.net".into()],
            vec![Policy::new(
                "iothubowner",
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            )],
            vec!["bearer-ok".into()],
        )
    }

    const GOOD: &str = "SharedAccessSignature sr=myhub.azure-devices.net&sig=sJAIZTF5oG40VHrie96heZ865%2BnR4QavBvHnzxZm8rk%3D&skn=iothubowner&se=1700000000";

    #[test]
    fn expired_wrong_key_unknown_policy_and_other_hub_are_rejected() {
        let a = auth();
        assert_eq!(a.check(Some(GOOD), 1_699_999_999), Ok(()));
        // Expired: se is not in the future.
        assert!(a.check(Some(GOOD), 1_700_000_000).is_err());
        // Wrong key: same policy name, other key.
        let wrong = Authenticator::new(
            vec!["myhub.azure-devices.net".into()],
            vec![Policy::new(
                "iothubowner",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            )],
            vec![],
        );
        assert!(wrong.check(Some(GOOD), 1_699_999_999).is_err());
        // Unknown policy.
        let unknown = GOOD.replace("skn=iothubowner", "skn=registryRead");
        assert!(a.check(Some(&unknown), 1_699_999_999).is_err());
        // Another hub.
        let other = Authenticator::new(
            vec!["otherhub.azure-devices.net".into()],
            a.policies.clone(),
            vec![],
        );
        assert!(other.check(Some(GOOD), 1_699_999_999).is_err());
        // Tampered se.
        assert!(a
            .check(
                Some(&GOOD.replace("se=1700000000", "se=1800000000")),
                1_699_999_999
            )
            .is_err());
        // Missing or garbage header.
        assert!(a.check(None, 0).is_err());
        assert!(a.check(Some("SharedAccessSignature sr=x"), 0).is_err());
        assert!(a.check(Some("Basic abc"), 0).is_err());
        let err = a.check(Some(&unknown), 1_699_999_999).unwrap_err();
        assert_eq!(err.status(), hyper::StatusCode::UNAUTHORIZED);
        assert!(
            !err.message.contains("sJAIZTF5"),
            "errors never echo signatures"
        );
    }

    #[test]
    fn hub_name_is_case_insensitive_and_may_carry_a_path() {
        let a = auth();
        let key = lenient_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
        // A device-style token: url-encoded sr, signed over the encoded form.
        let sr = "MyHub.Azure-Devices.NET/devices/d1";
        let enc = utf8_percent_encode(sr, URI_COMPONENT).to_string();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{enc}\n4000000000").as_bytes());
        let sig = STANDARD.encode(mac.finalize().into_bytes());
        let sig = utf8_percent_encode(&sig, URI_COMPONENT);
        let token =
            format!("SharedAccessSignature sr={enc}&sig={sig}&se=4000000000&skn=iothubowner");
        assert_eq!(a.check(Some(&token), 1_700_000_000), Ok(()));
    }

    #[test]
    fn bearer_tokens_only_when_listed() {
        let a = auth();
        assert_eq!(a.check(Some("Bearer bearer-ok"), 0), Ok(()));
        assert!(a.check(Some("Bearer bearer-no"), 0).is_err());
        assert!(Authenticator::new(vec![], vec![], vec![])
            .check(Some("Bearer "), 0)
            .is_err());
    }

    #[test]
    fn lenient_decoder_matches_node() {
        assert_eq!(
            lenient_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
            (0u8..32).collect::<Vec<_>>()
        );
        assert_eq!(lenient_base64("key"), vec![0x91, 0xec]);
        assert_eq!(lenient_base64("_-8="), lenient_base64("/+8"));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let t = parse_sas(GOOD).unwrap();
        assert!(!format!("{t:?}").contains("sJAIZTF5"));
        assert!(!format!("{:?}", auth()).contains("MDEyMzQ1"));
        assert!(!format!("{:?}", auth()).contains("bearer-ok"));
    }

    /// A client token for `{host}/{resource}` as the device SDKs make one (sr url-encoded).
    fn client_token(resource: &str, key: &str, skn: Option<&str>, se: u64) -> String {
        let sr = utf8_percent_encode(
            &format!("myhub.azure-devices.net/{resource}"),
            URI_COMPONENT,
        )
        .to_string();
        let mut mac = Hmac::<Sha256>::new_from_slice(&lenient_base64(key)).unwrap();
        mac.update(format!("{sr}\n{se}").as_bytes());
        let sig = STANDARD.encode(mac.finalize().into_bytes());
        let sig = utf8_percent_encode(&sig, URI_COMPONENT);
        let skn = skn.map(|n| format!("&skn={n}")).unwrap_or_default();
        format!("SharedAccessSignature sr={sr}&sig={sig}&se={se}{skn}")
    }

    #[test]
    fn module_tokens_are_accepted_for_their_module_only() {
        let a = auth();
        const DEVICE_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        const MODULE_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
        const OTHER_KEY: &str = "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=";
        let (now, se) = (1_700_000_000, 1_700_003_600);
        let module = vec![(
            "devices/edge/modules/filter".to_string(),
            [MODULE_KEY.to_string(), OTHER_KEY.to_string()],
        )];
        let device = vec![(
            "devices/edge".to_string(),
            [DEVICE_KEY.to_string(), DEVICE_KEY.to_string()],
        )];
        let check =
            |token: &str, grants: &[(String, [String; 2])]| a.check_device(token, grants, now);

        // The module's own token, with either key.
        let own = client_token("devices/edge/modules/filter", MODULE_KEY, None, se);
        assert_eq!(check(&own, &module), Ok(()));
        let secondary = client_token("devices/edge/modules/filter", OTHER_KEY, None, se);
        assert_eq!(check(&secondary, &module), Ok(()));
        // ... but not as the device, nor as a sibling module.
        assert_eq!(
            check(&own, &device),
            Err("the token's resource (sr) does not name this device or module")
        );
        let sibling = vec![(
            "devices/edge/modules/other".to_string(),
            [OTHER_KEY.to_string(), OTHER_KEY.to_string()],
        )];
        assert!(check(&own, &sibling).is_err());
        // The parent device's token does not open the module (Azure/iotedge#5155), nor does
        // a module-scoped token signed with the device's key.
        let parent = client_token("devices/edge", DEVICE_KEY, None, se);
        assert_eq!(check(&parent, &device), Ok(()));
        assert!(check(&parent, &module).is_err());
        let parent_key = client_token("devices/edge/modules/filter", DEVICE_KEY, None, se);
        assert_eq!(
            check(&parent_key, &module),
            Err("the token's signature does not match")
        );
        // A wrong key, an expired token.
        let wrong = client_token("devices/edge/modules/filter", DEVICE_KEY, None, se);
        assert!(check(&wrong, &module).is_err());
        let expired = client_token("devices/edge/modules/filter", MODULE_KEY, None, now);
        assert_eq!(check(&expired, &module), Err("the token has expired"));
        // A policy token (skn) for the module or the hub, signed with the policy's key.
        let policy_key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let policy = client_token(
            "devices/edge/modules/filter",
            policy_key,
            Some("iothubowner"),
            se,
        );
        assert_eq!(check(&policy, &module), Ok(()));
        let forged = client_token(
            "devices/edge/modules/filter",
            MODULE_KEY,
            Some("iothubowner"),
            se,
        );
        assert!(check(&forged, &module).is_err());
    }
}
