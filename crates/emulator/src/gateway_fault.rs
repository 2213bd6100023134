//! The test gateway's in-band fault injection, as Microsoft's e2e suites use it: a device
//! message carrying the application property `AzIoTHub_FaultOperationType` (with
//! `AzIoTHub_FaultOperationCloseReason` and `AzIoTHub_FaultOperationDelayInSecs`) asks the hub
//! to break that device's connection in the way it names, after the delay. The hub decides
//! (`Hub::device_message`) and tells the device's link (`Outgoing::Fault`); each transport only
//! carries it out.

/// An AMQP link of a device's connection, named as the fault kinds name them (`Req`/`Resp` from
/// the device's side: it sends requests on `CbsRequest`, `TwinRequest`, `MethodResponse`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmqpLink {
    CbsRequest,
    CbsResponse,
    Telemetry,
    CloudToDevice,
    MethodRequest,
    MethodResponse,
    TwinRequest,
    TwinResponse,
}

/// What a fault does to the device's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The TCP connection is cut: no AMQP close, no MQTT goodbye (any transport).
    KillTcp,
    /// The AMQP connection is closed with an error.
    KillAmqpConnection,
    /// The device's AMQP session is ended with an error; the connection stays.
    KillAmqpSession,
    /// One AMQP link is detached with an error.
    KillAmqpLink(AmqpLink),
    /// The AMQP connection is closed cleanly.
    ShutDownAmqp,
    /// The MQTT connection is closed cleanly.
    ShutDownMqtt,
}

impl FaultKind {
    fn parse(name: &str) -> Option<Self> {
        use AmqpLink::*;
        Some(match name {
            "KillTcp" => FaultKind::KillTcp,
            "KillAmqpConnection" => FaultKind::KillAmqpConnection,
            "KillAmqpSession" => FaultKind::KillAmqpSession,
            "KillAmqpCBSLinkReq" => FaultKind::KillAmqpLink(CbsRequest),
            "KillAmqpCBSLinkResp" => FaultKind::KillAmqpLink(CbsResponse),
            "KillAmqpD2CLink" => FaultKind::KillAmqpLink(Telemetry),
            "KillAmqpC2DLink" => FaultKind::KillAmqpLink(CloudToDevice),
            "KillAmqpMethodReqLink" => FaultKind::KillAmqpLink(MethodRequest),
            "KillAmqpMethodRespLink" => FaultKind::KillAmqpLink(MethodResponse),
            "KillAmqpTwinLinkReq" => FaultKind::KillAmqpLink(TwinRequest),
            "KillAmqpTwinLinkResp" => FaultKind::KillAmqpLink(TwinResponse),
            "ShutDownAmqp" => FaultKind::ShutDownAmqp,
            "ShutDownMqtt" => FaultKind::ShutDownMqtt,
            _ => return None,
        })
    }
}

/// A fault for a device's connection: what it does and the reason its error carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayFault {
    pub kind: FaultKind,
    pub reason: String,
}

/// The longest delay a fault message may ask for (the suites ask for 1 to a few seconds).
const MAX_DELAY_SECS: u64 = 3600;

/// The fault a device message asks for, and its delay in seconds (on the emulator's clock);
/// `None` when it asks for none or names a kind this hub does not know (then it is telemetry
/// like any other).
pub fn requested(properties: &[(String, String)]) -> Option<(GatewayFault, u64)> {
    let get = |name: &str| {
        properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
    };
    let kind = FaultKind::parse(get("AzIoTHub_FaultOperationType")?)?;
    let reason = get("AzIoTHub_FaultOperationCloseReason")
        .unwrap_or("")
        .to_string();
    let delay = get("AzIoTHub_FaultOperationDelayInSecs")
        .and_then(|d| d.parse::<u64>().ok())
        .unwrap_or(0)
        .min(MAX_DELAY_SECS);
    Some((GatewayFault { kind, reason }, delay))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_fault_message_names_kind_reason_and_delay() {
        let (fault, delay) = requested(&props(&[
            ("AzIoTHub_FaultOperationType", "KillAmqpTwinLinkReq"),
            ("AzIoTHub_FaultOperationCloseReason", " severs the link "),
            ("AzIoTHub_FaultOperationDelayInSecs", "2"),
        ]))
        .unwrap();
        assert_eq!(fault.kind, FaultKind::KillAmqpLink(AmqpLink::TwinRequest));
        assert_eq!(fault.reason, "severs the link");
        assert_eq!(delay, 2);
        let (fault, delay) =
            requested(&props(&[("AzIoTHub_FaultOperationType", "KillTcp")])).unwrap();
        assert_eq!(
            (fault.kind, fault.reason.as_str(), delay),
            (FaultKind::KillTcp, "", 0)
        );
    }

    #[test]
    fn other_messages_ask_for_nothing() {
        assert_eq!(requested(&props(&[("a", "b")])), None);
        assert_eq!(
            requested(&props(&[("AzIoTHub_FaultOperationType", "KillEverything")])),
            None
        );
    }
}
