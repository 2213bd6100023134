//! File-upload notifications for the service, as azure-iothub's `getFileNotificationReceiver`
//! reads them on `/messages/serviceBound/filenotifications`: one JSON message per notification
//! (`hub/files.rs`), sent unsettled; the service completes (accepted), rejects (dropped) or
//! abandons it (released or modified: it waits again, up to the hub's max delivery count).

use std::sync::Arc;

use fe2o3_amqp::link::delivery::Sendable;
use fe2o3_amqp::types::messaging::{MessageId, Outcome, Properties};
use fe2o3_amqp::types::primitives::Symbol;
use fe2o3_amqp::Sender;

use super::message::data_message;
use crate::hub::{FileNotification, Hub};

fn notification_message(notification: &FileNotification) -> super::AmqpMessage {
    let mut message = data_message(notification.to_json().to_string().into_bytes());
    message.properties = Some(Properties {
        message_id: Some(MessageId::String(crate::errors::tracking_id())),
        content_type: Some(Symbol::from("application/json")),
        ..Default::default()
    });
    message
}

/// Sends the hub's notifications until the service detaches.
pub(super) async fn serve(hub: Arc<Hub>, mut sender: Sender) {
    loop {
        let ready = hub.file_notification_ready();
        let Some(notification) = hub.take_file_notification() else {
            tokio::select! {
                _ = ready => continue,
                _ = sender.on_detach() => break,
            }
        };
        let sendable = Sendable::builder()
            .message(notification_message(&notification))
            .settled(false)
            .build();
        match sender.send_batchable(sendable).await {
            Ok(outcome) => {
                let hub = hub.clone();
                tokio::spawn(async move {
                    match outcome.await {
                        Ok(Outcome::Accepted(_) | Outcome::Rejected(_)) => {
                            hub.settle_file_notification(&notification)
                        }
                        _ => hub.return_file_notification(notification),
                    }
                });
            }
            Err(_) => {
                hub.return_file_notification(notification);
                break;
            }
        }
    }
    let _ = sender.close().await;
}
