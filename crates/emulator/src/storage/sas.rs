//! Shared access signatures signed with the account key (HMAC-SHA256 over the Storage
//! string-to-sign, version 2020-10-02, which Azurite and the service accept): a blob SAS for
//! one blob (what a device uploads with) and an account SAS for the hub's own requests.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Account;

pub const VERSION: &str = "2020-10-02";

fn sign(account: &Account, string_to_sign: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(account.key()).expect("HMAC takes any key");
    mac.update(string_to_sign.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

fn query_escape(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// ISO 8601 UTC, seconds, as SAS `se` takes it.
pub fn iso_seconds(unix_secs: u64) -> String {
    chrono::DateTime::from_timestamp(unix_secs as i64, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A service SAS for one blob with `permissions` (e.g. `rcw`) until `expiry` (unix seconds),
/// as a query string starting with `?` (the file-upload answer's `sasToken`).
pub fn blob_sas(
    account: &Account,
    container: &str,
    blob: &str,
    permissions: &str,
    expiry: u64,
) -> String {
    let se = iso_seconds(expiry);
    // sp, st, se, canonicalizedResource, si, sip, spr, sv, sr, snapshot time, rscc, rscd,
    // rsce, rscl, rsct.
    let resource = format!("/blob/{}/{container}/{blob}", account.name);
    let string_to_sign =
        format!("{permissions}\n\n{se}\n{resource}\n\n\n\n{VERSION}\nb\n\n\n\n\n\n");
    format!(
        "?sv={VERSION}&sr=b&sig={}&se={}&sp={permissions}",
        query_escape(&sign(account, &string_to_sign)),
        query_escape(&se)
    )
}

/// An account SAS for the blob service's containers and blobs (the hub's own requests), as a
/// query string without `?`.
pub fn account_sas(account: &Account, expiry: u64) -> String {
    let se = iso_seconds(expiry);
    let permissions = "rwdlac";
    // accountname, sp, ss, srt, st, se, sip, spr, sv.
    let string_to_sign = format!(
        "{}\n{permissions}\nb\nsco\n\n{se}\n\n\n{VERSION}\n",
        account.name
    );
    format!(
        "sv={VERSION}&ss=b&srt=sco&sp={permissions}&se={}&sig={}",
        query_escape(&se),
        query_escape(&sign(account, &string_to_sign))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_sas_is_scoped_and_signed() {
        let account = Account::new("acct", "AAAA", "https://acct.blob.core.windows.net").unwrap();
        let sas = blob_sas(&account, "c", "dev/f.txt", "rcw", 0);
        assert!(sas.starts_with("?sv=2020-10-02&sr=b&sig="), "{sas}");
        assert!(
            sas.ends_with("&se=1970%2D01%2D01T00%3A00%3A00Z&sp=rcw"),
            "{sas}"
        );
        assert_ne!(sas, blob_sas(&account, "c", "dev/g.txt", "rcw", 0));
        assert!(account_sas(&account, 0).contains("srt=sco"));
    }
}
