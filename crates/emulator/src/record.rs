//! A bounded ring of recorded requests for the control API, so tests can check what a client
//! actually sent (headers, body, query) and what the emulator did (status, fault).
//! Bounded so a long benchmark cannot grow memory; the oldest entries fall off first.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use crate::clock::iso;

/// How many requests are kept.
pub const CAPACITY: usize = 1000;
/// Bodies longer than this are cut (method payloads can be 128 KB; enough to check them).
pub const MAX_BODY: usize = 256 * 1024;

pub struct RecordedRequest {
    /// Real wall-clock milliseconds; formatted only when read.
    pub time_ms: i64,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub status: Option<u16>,
    pub fault: Option<&'static str>,
}

#[derive(Default)]
struct Ring {
    items: VecDeque<(u64, RecordedRequest)>,
    next_seq: u64,
    dropped: u64,
}

#[derive(Default)]
pub struct Recorder {
    ring: Mutex<Ring>,
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        crate::locks::lock(&self.ring)
    }

    pub fn push(&self, mut r: RecordedRequest) {
        if r.body.len() > MAX_BODY {
            let mut cut = MAX_BODY;
            while !r.body.is_char_boundary(cut) {
                cut -= 1;
            }
            r.body.truncate(cut);
        }
        let mut ring = self.lock();
        ring.next_seq += 1;
        let seq = ring.next_seq;
        if ring.items.len() == CAPACITY {
            ring.items.pop_front();
            ring.dropped += 1;
        }
        ring.items.push_back((seq, r));
    }

    /// The recorded requests, oldest first; with `clear`, empties the ring in the same step.
    pub fn snapshot(&self, clear: bool) -> Value {
        let mut ring = self.lock();
        let requests: Vec<Value> = ring
            .items
            .iter()
            .map(|(seq, r)| {
                let mut headers = Map::new();
                for (k, v) in &r.headers {
                    match headers.get_mut(k) {
                        Some(Value::String(prev)) => {
                            prev.push_str(", ");
                            prev.push_str(v);
                        }
                        _ => {
                            headers.insert(k.clone(), json!(v));
                        }
                    }
                }
                json!({
                    "seq": seq, "time": iso(r.time_ms), "method": r.method, "path": r.path, "query": r.query,
                    "headers": headers, "body": r.body, "status": r.status, "fault": r.fault,
                })
            })
            .collect();
        let out = json!({"requests": requests, "dropped": ring.dropped});
        if clear {
            ring.items.clear();
            ring.dropped = 0;
        }
        out
    }

    pub fn clear(&self) {
        let mut ring = self.lock();
        ring.items.clear();
        ring.dropped = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str) -> RecordedRequest {
        RecordedRequest {
            time_ms: 0,
            method: "GET".into(),
            path: path.into(),
            query: String::new(),
            headers: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            body: String::new(),
            status: Some(200),
            fault: None,
        }
    }

    #[test]
    fn ring_is_bounded_and_clearable() {
        let r = Recorder::default();
        for i in 0..CAPACITY + 5 {
            r.push(req(&format!("/{i}")));
        }
        let snap = r.snapshot(false);
        assert_eq!(snap["requests"].as_array().unwrap().len(), CAPACITY);
        assert_eq!(snap["dropped"], 5);
        assert_eq!(snap["requests"][0]["path"], "/5");
        assert_eq!(snap["requests"][0]["headers"]["a"], "1, 2");
        assert_eq!(
            r.snapshot(true)["requests"].as_array().unwrap().len(),
            CAPACITY
        );
        assert!(r.snapshot(false)["requests"].as_array().unwrap().is_empty());
    }
}
