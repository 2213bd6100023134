//! Factories with native Azure AD credentials (no `@azure/identity` needed):
//! `fromManagedIdentity`, `fromWorkloadIdentity`, `fromClientSecret`, `fromAzureCli`.
//!
//! The credentials are `azure_identity`'s, adapted in the core (`iothub_jobs_core::azure_identity`),
//! which also routes their token requests through the client's own TLS trust (`ca`,
//! `NODE_EXTRA_CA_CERTS`), proxy and timeouts. Each factory takes the common options
//! (`ca`, `retry`, `timeoutMs`, `proxy`, `userAgentPrefix`, `apiVersion`) in the same object as its
//! own settings.

use std::path::PathBuf;

use iothub_jobs_core::azure_identity::WorkloadIdentity;
use iothub_jobs_core::JobClient as CoreClient;
use napi::bindgen_prelude::{Env, JsValue, Unknown};
use napi::sys::{napi_env, napi_value};
use napi::Result;
use napi_derive::napi;

use crate::args;
use crate::client::JobClient;
use crate::errors;
use crate::js::{self, Kind};

/// `hostName` must be a non-empty string (`host` or `host:port`).
fn host_name(env: napi_env, value: napi_value) -> Result<String> {
    if js::kind(env, value) != Kind::String {
        return Err(errors::type_error(env, "hostName must be a string"));
    }
    let host = js::read_string(env, value)?;
    if host.is_empty() {
        return Err(errors::hub_thrown(
            env,
            "ArgumentError",
            "config.host cannot be ''",
        ));
    }
    Ok(host)
}

/// A required non-empty string argument.
fn required(env: napi_env, value: napi_value, name: &str) -> Result<String> {
    if js::kind(env, value) != Kind::String {
        return Err(errors::type_error(env, &format!("{name} must be a string")));
    }
    let text = js::read_string(env, value)?;
    if text.is_empty() {
        return Err(errors::hub_thrown(
            env,
            "ArgumentError",
            &format!("{name} cannot be ''"),
        ));
    }
    Ok(text)
}

/// `options[key]` as an optional string (`undefined`/`null`/missing options: `None`).
fn setting(env: napi_env, options: napi_value, key: &std::ffi::CStr) -> Result<Option<String>> {
    if js::kind(env, options) != Kind::Object {
        return Ok(None);
    }
    let name = format!("options.{}", key.to_string_lossy());
    args::optional_string(env, options, key, &name)
}

fn finish(
    env: napi_env,
    client: std::result::Result<CoreClient, iothub_jobs_core::Error>,
) -> Result<JobClient> {
    client
        .map(|inner| JobClient { inner })
        .map_err(|e| match errors::core_error(env, e) {
            Ok(v) => js::retain_error(env, v),
            Err(e) => e,
        })
}

#[napi]
impl JobClient {
    /// `JobClient.fromManagedIdentity(hostName, { clientId?, ...options })`.
    #[napi(
        factory,
        catch_unwind,
        ts_args_type = "hostName: string, options?: ManagedIdentityOptions"
    )]
    pub fn from_managed_identity(env: &Env, host_name: Unknown, options: Unknown) -> Result<Self> {
        let raw = env.raw();
        let host = self::host_name(raw, host_name.raw())?;
        let options_value = options.raw();
        let client_options = args::client_options(raw, options_value)?;
        let client_id = setting(raw, options_value, c"clientId")?;
        finish(
            raw,
            CoreClient::from_managed_identity(&host, client_id, client_options),
        )
    }

    /// `JobClient.fromWorkloadIdentity(hostName, { tenantId?, clientId?, tokenFilePath?, authorityHost?, ...options })`.
    #[napi(
        factory,
        catch_unwind,
        ts_args_type = "hostName: string, options?: WorkloadIdentityOptions"
    )]
    pub fn from_workload_identity(env: &Env, host_name: Unknown, options: Unknown) -> Result<Self> {
        let raw = env.raw();
        let host = self::host_name(raw, host_name.raw())?;
        let options_value = options.raw();
        let client_options = args::client_options(raw, options_value)?;
        let settings = WorkloadIdentity {
            tenant_id: setting(raw, options_value, c"tenantId")?,
            client_id: setting(raw, options_value, c"clientId")?,
            token_file_path: setting(raw, options_value, c"tokenFilePath")?
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            authority_host: setting(raw, options_value, c"authorityHost")?,
        };
        finish(
            raw,
            CoreClient::from_workload_identity(&host, settings, client_options),
        )
    }

    /// `JobClient.fromClientSecret(hostName, tenantId, clientId, clientSecret, { authorityHost?, ...options })`.
    #[napi(
        factory,
        catch_unwind,
        ts_args_type = "hostName: string, tenantId: string, clientId: string, clientSecret: string, options?: ClientSecretOptions"
    )]
    pub fn from_client_secret(
        env: &Env,
        host_name: Unknown,
        tenant_id: Unknown,
        client_id: Unknown,
        client_secret: Unknown,
        options: Unknown,
    ) -> Result<Self> {
        let raw = env.raw();
        let host = self::host_name(raw, host_name.raw())?;
        let tenant_id = required(raw, tenant_id.raw(), "tenantId")?;
        let client_id = required(raw, client_id.raw(), "clientId")?;
        let secret = required(raw, client_secret.raw(), "clientSecret")?;
        let options_value = options.raw();
        let client_options = args::client_options(raw, options_value)?;
        let authority_host = setting(raw, options_value, c"authorityHost")?;
        finish(
            raw,
            CoreClient::from_client_secret(
                &host,
                &tenant_id,
                &client_id,
                &secret,
                authority_host.as_deref(),
                client_options,
            ),
        )
    }

    /// `JobClient.fromAzureCli(hostName, { tenantId?, ...options })`.
    #[napi(
        factory,
        catch_unwind,
        ts_args_type = "hostName: string, options?: AzureCliOptions"
    )]
    pub fn from_azure_cli(env: &Env, host_name: Unknown, options: Unknown) -> Result<Self> {
        let raw = env.raw();
        let host = self::host_name(raw, host_name.raw())?;
        let options_value = options.raw();
        let client_options = args::client_options(raw, options_value)?;
        let tenant_id = setting(raw, options_value, c"tenantId")?;
        finish(
            raw,
            CoreClient::from_azure_cli(&host, tenant_id, client_options),
        )
    }
}
