//! The coordinator's and node agents' audit lines: one JSON object per event, appended and
//! flushed to a file (and echoed to stderr). Every refusal is logged with its rule.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

pub struct Audit {
    file: Option<Mutex<std::fs::File>>,
    who: String,
}

impl Audit {
    pub fn new(who: &str, path: Option<PathBuf>) -> anyhow::Result<Audit> {
        let file = path
            .map(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&p)
                    .map_err(|e| anyhow::anyhow!("audit log {}: {e}", p.display()))
            })
            .transpose()?
            .map(Mutex::new);
        Ok(Audit {
            file,
            who: who.into(),
        })
    }

    /// Logs `event` with its fields.
    pub fn log(&self, event: &str, fields: serde_json::Value) {
        let mut line = serde_json::json!({ "at": crate::now(), "who": self.who, "event": event });
        if let (Some(o), serde_json::Value::Object(f)) = (line.as_object_mut(), fields) {
            o.extend(f);
        }
        let text = line.to_string();
        eprintln!("omega-fleet: {text}");
        if let Some(f) = &self.file
            && let Ok(mut f) = f.lock()
        {
            let _ = writeln!(f, "{text}");
            let _ = f.sync_data();
        }
    }
}
