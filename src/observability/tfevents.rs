//! TensorBoard's event files, written the way TensorFlow writes them. Each file is named
//! `events.out.tfevents.<secs>.<host>.<pid>.<n>`, so a resumed run's new file sorts after the old
//! one. Its records are framed as TFRecords: the length, the masked CRC-32C of the length, the
//! data, then the masked CRC-32C of the data. The first record is `Event{file_version:
//! "brain.Event:2"}`; the rest are summaries at a global step.
//!
//! Our own writer over the prost messages in `proto/`. The crates that write event files either
//! have no HParams summaries (`tfrecord`, `syntaxdot-summary`) or are unmaintained with an
//! `unimplemented!()` in its place (`tensorboard-rs`), and the format is a page long.
//!
//! Event files are logs: written in place and flushed after each batch of summaries, as
//! TensorFlow's writer does. A reader stops at a record cut short and reads it again later, so a
//! process killed mid-write loses at most its last record.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use prost::Message;

use crate::proto::tensorboard::hparams as hp;
use crate::proto::tensorflow::{
    event, session_log, summary, summary_metadata, tensor_shape_proto, DataType, Event, SessionLog,
    Summary, SummaryMetadata, TensorProto, TensorShapeProto,
};

/// The version string of the first record of every file.
pub const FILE_VERSION: &str = "brain.Event:2";

/// CRC-32C (Castagnoli) of `bytes`, masked as LevelDB and TFRecord mask it.
pub fn masked_crc(bytes: &[u8]) -> u32 {
    let c = crc32c::crc32c(bytes);
    c.rotate_right(15).wrapping_add(0xA282_EAD8)
}

/// Appends `data` to `out` as one TFRecord.
pub fn frame(data: &[u8], out: &mut Vec<u8>) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
}

/// Seconds since the epoch, as `Event.wall_time` holds them.
pub fn wall_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Files this process opened, for unique names within one second.
static OPENED: AtomicU64 = AtomicU64::new(0);

fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    // The name becomes part of a file name: keep it to what is safe there.
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() {
        "localhost".to_string()
    } else {
        safe
    }
}

/// `events.out.tfevents.<secs>.<host>.<pid>.<n>`, unique in this process.
fn file_name(secs: u64) -> String {
    format!(
        "events.out.tfevents.{:010}.{}.{}.{}",
        secs,
        hostname(),
        std::process::id(),
        OPENED.fetch_add(1, Ordering::Relaxed)
    )
}

/// One event file: one run of TensorBoard is a folder, and may hold several of them.
pub struct EventWriter {
    path: PathBuf,
    file: BufWriter<File>,
}

impl EventWriter {
    /// Opens a new file in `dir` (created if need be) and writes its first record.
    pub fn create(dir: &Path) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let now = wall_time();
        let name = file_name(now as u64);
        Self::open(dir.join(name), now)
    }

    /// Opens a new file in `dir` whose name sorts after every event file already there, so
    /// that a reader, which takes a run's files in name order, reads what it holds last. A file
    /// another process opened in the same second may otherwise sort after it (the names differ
    /// by host and pid).
    pub fn create_last(dir: &Path) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let now = wall_time();
        let newest = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.contains("tfevents"))
            .max();
        let mut name = file_name(now as u64);
        if let Some(newest) = newest.filter(|n| *n >= name) {
            // A later second sorts after it when the newest is named as ours are; otherwise
            // (another writer's form, or the last ten-digit second) its name extended does.
            let secs = newest
                .strip_prefix("events.out.tfevents.")
                .and_then(|rest| rest.split('.').next())
                .filter(|s| s.len() == 10)
                .and_then(|s| s.parse::<u64>().ok());
            name = secs
                .map(|s| file_name(s + 1))
                .filter(|n| *n > newest)
                .unwrap_or_else(|| {
                    format!(
                        "{newest}.{}.{}",
                        std::process::id(),
                        OPENED.fetch_add(1, Ordering::Relaxed)
                    )
                });
        }
        Self::open(dir.join(name), now)
    }

    fn open(path: PathBuf, now: f64) -> Result<EventWriter> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut writer = EventWriter {
            path,
            file: BufWriter::new(file),
        };
        writer.write(&Event {
            wall_time: now,
            step: 0,
            what: Some(event::What::FileVersion(FILE_VERSION.to_string())),
        })?;
        writer.flush()?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, event: &Event) -> Result<()> {
        let data = event.encode_to_vec();
        let mut record = Vec::with_capacity(data.len() + 16);
        frame(&data, &mut record);
        self.file
            .write_all(&record)
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Scalars at `step`, as `simple_value`s (what Estimators wrote; every reader takes them).
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<()> {
        let value = values
            .iter()
            .map(|(tag, v)| summary::Value {
                tag: (*tag).to_string(),
                value: Some(summary::value::Value::SimpleValue(*v as f32)),
                ..Default::default()
            })
            .collect();
        self.summary(step, Summary { value })
    }

    /// `SessionLog{START}` at `step`: TensorBoard's Python reader drops the points it has read
    /// so far (from the run's earlier files) at `step` and after, which a killed run left past
    /// its last checkpoint and a resumed one writes again. A resumed run writes it first, at
    /// the first step it trains (the checkpoint's own step keeps its points), as TF's
    /// `SummarySaverHook` did. Rustboard ignores it.
    pub fn session_start(&mut self, step: u64) -> Result<()> {
        self.write(&Event {
            wall_time: wall_time(),
            step: step as i64,
            what: Some(event::What::SessionLog(SessionLog {
                status: session_log::SessionStatus::Start as i32,
                ..Default::default()
            })),
        })
    }

    pub fn summary(&mut self, step: u64, summary: Summary) -> Result<()> {
        self.write(&Event {
            wall_time: wall_time(),
            step: step as i64,
            what: Some(event::What::Summary(summary)),
        })
    }

    pub fn flush(&mut self) -> Result<()> {
        self.file
            .flush()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// The data of each whole record of `bytes`, the inverse of [`frame`]: reading stops at a record
/// cut short or whose CRC does not match.
pub fn records(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 12 {
        let (head, after) = rest.split_at(8);
        let len = u64::from_le_bytes(head.try_into().unwrap_or([0; 8]));
        let crc = u32::from_le_bytes(after[..4].try_into().unwrap_or([0; 4]));
        // The CRC of the length, the data and its CRC.
        let Some(end) = usize::try_from(len).ok().and_then(|l| l.checked_add(8)) else {
            break;
        };
        if crc != masked_crc(head) || after.len() < end {
            break;
        }
        let data = &after[4..end - 4];
        let data_crc = u32::from_le_bytes(after[end - 4..end].try_into().unwrap_or([0; 4]));
        if data_crc != masked_crc(data) {
            break;
        }
        out.push(data);
        rest = &after[end..];
    }
    out
}

/// Every scalar of `tag` in the event files of a run folder, in file-name order, as (step,
/// value): `simple_value`s and rank-0 float tensors (TF2's form). A record cut short or whose
/// CRC does not match ends its file's reading (a writer may be in the middle of it).
pub fn read_scalars(dir: &Path, tag: &str) -> Vec<(u64, f64)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains("tfevents"))
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        for data in records(&bytes) {
            let Ok(event) = Event::decode(data) else {
                continue;
            };
            let Some(event::What::Summary(summary)) = event.what else {
                continue;
            };
            for v in summary.value.iter().filter(|v| v.tag == tag) {
                let value = match &v.value {
                    Some(summary::value::Value::SimpleValue(x)) => Some(f64::from(*x)),
                    Some(summary::value::Value::Tensor(t)) if t.float_val.len() == 1 => {
                        Some(f64::from(t.float_val[0]))
                    }
                    Some(summary::value::Value::Tensor(t)) if t.double_val.len() == 1 => {
                        Some(t.double_val[0])
                    }
                    _ => None,
                };
                if let Some(value) = value.filter(|x| x.is_finite()) {
                    out.push((u64::try_from(event.step).unwrap_or(0), value));
                }
            }
        }
    }
    out
}

/// The HParams plugin's summaries (tensorboard/plugins/hparams/metadata.py): an experiment names
/// the hyperparameters and metrics of a study; each session (a trial, a run folder) says its
/// hyperparameters when it starts and its status when it ends. The dashboard lists the sessions
/// with the last value of each metric found in their folders (`eval/accuracy` is the `accuracy`
/// tag of the session's `eval` folder).
pub mod hparams {
    use super::*;

    pub const PLUGIN_NAME: &str = "hparams";
    pub const EXPERIMENT_TAG: &str = "_hparams_/experiment";
    pub const SESSION_START_TAG: &str = "_hparams_/session_start_info";
    pub const SESSION_END_TAG: &str = "_hparams_/session_end_info";

    /// A hyperparameter's value.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Number(f64),
        Text(String),
        Bool(bool),
    }

    impl Value {
        fn to_proto(&self) -> prost_types::Value {
            use prost_types::value::Kind;
            prost_types::Value {
                kind: Some(match self {
                    Value::Number(n) => Kind::NumberValue(*n),
                    Value::Text(s) => Kind::StringValue(s.clone()),
                    Value::Bool(b) => Kind::BoolValue(*b),
                }),
            }
        }
    }

    /// What values a hyperparameter takes, for the experiment.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Domain {
        Interval { min: f64, max: f64 },
        Discrete(Vec<Value>),
    }

    pub struct HParam {
        pub name: String,
        pub domain: Domain,
    }

    /// A metric of the experiment: a scalar tag in a folder of each session (`""` or `"eval"`).
    pub struct Metric {
        pub group: String,
        pub tag: String,
    }

    /// The plugin's summaries are empty float tensors that carry their data in the metadata.
    fn summary(tag: &str, data: hp::h_params_plugin_data::Data) -> Summary {
        let content = hp::HParamsPluginData {
            version: 0,
            data: Some(data),
        }
        .encode_to_vec();
        let null_tensor = TensorProto {
            dtype: DataType::DtFloat as i32,
            tensor_shape: Some(TensorShapeProto {
                dim: vec![tensor_shape_proto::Dim {
                    size: 0,
                    name: String::new(),
                }],
                unknown_rank: false,
            }),
            ..Default::default()
        };
        Summary {
            value: vec![summary::Value {
                tag: tag.to_string(),
                metadata: Some(SummaryMetadata {
                    plugin_data: Some(summary_metadata::PluginData {
                        plugin_name: PLUGIN_NAME.to_string(),
                        content,
                    }),
                    ..Default::default()
                }),
                value: Some(summary::value::Value::Tensor(null_tensor)),
                ..Default::default()
            }],
        }
    }

    pub fn experiment(name: &str, hparams: &[HParam], metrics: &[Metric]) -> Summary {
        let hparam_infos = hparams
            .iter()
            .map(|h| {
                let (kind, domain) = match &h.domain {
                    Domain::Interval { min, max } => (
                        hp::DataType::Float64,
                        hp::h_param_info::Domain::DomainInterval(hp::Interval {
                            min_value: *min,
                            max_value: *max,
                        }),
                    ),
                    Domain::Discrete(values) => (
                        match values.first() {
                            Some(Value::Text(_)) => hp::DataType::String,
                            Some(Value::Bool(_)) => hp::DataType::Bool,
                            _ => hp::DataType::Float64,
                        },
                        hp::h_param_info::Domain::DomainDiscrete(prost_types::ListValue {
                            values: values.iter().map(Value::to_proto).collect(),
                        }),
                    ),
                };
                hp::HParamInfo {
                    name: h.name.clone(),
                    r#type: kind as i32,
                    domain: Some(domain),
                    ..Default::default()
                }
            })
            .collect();
        let metric_infos = metrics
            .iter()
            .map(|m| hp::MetricInfo {
                name: Some(hp::MetricName {
                    group: m.group.clone(),
                    tag: m.tag.clone(),
                }),
                dataset_type: if m.group == "eval" {
                    hp::DatasetType::DatasetValidation as i32
                } else {
                    hp::DatasetType::DatasetTraining as i32
                },
                ..Default::default()
            })
            .collect();
        summary(
            EXPERIMENT_TAG,
            hp::h_params_plugin_data::Data::Experiment(hp::Experiment {
                name: name.to_string(),
                time_created_secs: wall_time(),
                hparam_infos,
                metric_infos,
                ..Default::default()
            }),
        )
    }

    /// A session's start: its hyperparameters, and the group of sessions it belongs to (a
    /// trial's id; sessions of one group are averaged in the dashboard).
    pub fn session_start(hparams: &BTreeMap<String, Value>, group: &str) -> Summary {
        summary(
            SESSION_START_TAG,
            hp::h_params_plugin_data::Data::SessionStartInfo(hp::SessionStartInfo {
                hparams: hparams
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_proto()))
                    .collect(),
                group_name: group.to_string(),
                start_time_secs: wall_time(),
                ..Default::default()
            }),
        )
    }

    pub fn session_end(succeeded: bool) -> Summary {
        let status = if succeeded {
            hp::Status::Success
        } else {
            hp::Status::Failure
        };
        summary(
            SESSION_END_TAG,
            hp::h_params_plugin_data::Data::SessionEndInfo(hp::SessionEndInfo {
                status: status as i32,
                end_time_secs: wall_time(),
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_and_its_mask_match_the_reference_vectors() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(masked_crc(b"\x1a\x11CRC test, one two"), 0x5794_D08A);
    }

    /// The first record of a real TensorFlow event file (rustboard's tf_record.rs doctest):
    /// wall_time 1599759586.0 and the file version.
    #[test]
    fn the_first_record_is_byte_for_byte_tensorflows() {
        let event = Event {
            wall_time: 1_599_759_586.0,
            step: 0,
            what: Some(event::What::FileVersion(FILE_VERSION.to_string())),
        };
        let data = event.encode_to_vec();
        let mut want_data = vec![
            0x09, 0x00, 0x00, 0x80, 0x38, 0x99, 0xd6, 0xd7, 0x41, 0x1a, 0x0d,
        ];
        want_data.extend_from_slice(b"brain.Event:2");
        assert_eq!(data, want_data);
        let mut record = Vec::new();
        frame(&data, &mut record);
        let mut want = vec![0x18, 0, 0, 0, 0, 0, 0, 0];
        want.extend_from_slice(&0x224B_7FA3u32.to_le_bytes());
        want.extend_from_slice(&want_data);
        want.extend_from_slice(&0xAB36_4B12u32.to_le_bytes());
        assert_eq!(record, want);
        assert_eq!(record.len(), 8 + 4 + 24 + 4);
    }

    #[test]
    fn a_file_holds_framed_events_that_decode_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.scalars(7, &[("loss", 0.5), ("accuracy", 0.75)]).unwrap();
        w.summary(0, hparams::session_end(true)).unwrap();
        w.flush().unwrap();
        let name = w.path().file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        let bytes = std::fs::read(w.path()).unwrap();
        let records = records(&bytes);
        // Every byte belongs to a whole record whose CRCs match.
        assert_eq!(
            records.iter().map(|r| r.len() + 16).sum::<usize>(),
            bytes.len()
        );
        let events: Vec<Event> = records.iter().map(|r| Event::decode(*r).unwrap()).collect();
        assert_eq!(events.len(), 3);
        assert_eq!(
            events[0].what,
            Some(event::What::FileVersion(FILE_VERSION.into()))
        );
        assert_eq!(events[1].step, 7);
        let Some(event::What::Summary(s)) = &events[1].what else {
            panic!("{:?}", events[1]);
        };
        assert_eq!(s.value[1].tag, "accuracy");
        assert_eq!(
            s.value[1].value,
            Some(summary::value::Value::SimpleValue(0.75))
        );
        let Some(event::What::Summary(s)) = &events[2].what else {
            panic!("{:?}", events[2]);
        };
        let meta = s.value[0].metadata.as_ref().unwrap();
        let plugin = meta.plugin_data.as_ref().unwrap();
        assert_eq!(plugin.plugin_name, "hparams");
        let data = hp::HParamsPluginData::decode(&plugin.content[..]).unwrap();
        let Some(hp::h_params_plugin_data::Data::SessionEndInfo(end)) = data.data else {
            panic!("{data:?}");
        };
        assert_eq!(end.status, hp::Status::Success as i32);
        assert_eq!(read_scalars(dir.path(), "accuracy"), [(7, 0.75)]);
        assert!(read_scalars(dir.path(), "nope").is_empty());
        // A record cut short is where reading stops.
        std::fs::write(w.path(), &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(read_scalars(dir.path(), "accuracy"), [(7, 0.75)]);
        std::fs::write(w.path(), &bytes[..40]).unwrap();
        assert!(read_scalars(dir.path(), "accuracy").is_empty());
        // A second writer in the same folder gets its own file.
        let other = EventWriter::create(dir.path()).unwrap();
        assert_ne!(other.path(), w.path());
    }

    #[test]
    fn a_session_start_is_a_session_log_at_its_step() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.session_start(301).unwrap();
        w.flush().unwrap();
        let bytes = std::fs::read(w.path()).unwrap();
        let events: Vec<Event> = records(&bytes)
            .iter()
            .map(|r| Event::decode(*r).unwrap())
            .collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].step, 301);
        let Some(event::What::SessionLog(log)) = &events[1].what else {
            panic!("{:?}", events[1]);
        };
        assert_eq!(log.status, session_log::SessionStatus::Start as i32);
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn create_last_sorts_after_every_file_already_there() {
        let dir = tempfile::tempdir().unwrap();
        let last = |dir: &Path| {
            let w = EventWriter::create_last(dir).unwrap();
            let name = w.path().file_name().unwrap().to_str().unwrap().to_string();
            assert_eq!(names(dir).last(), Some(&name), "{:?}", names(dir));
            assert!(name.contains("tfevents"), "{name}");
            name
        };
        // Alone in its folder, it is named as any.
        let first = last(dir.path());
        assert!(first.starts_with("events.out.tfevents."), "{first}");
        // Another process's file of the same second whose host sorts after ours; one of a
        // later second (a clock ahead); another writer's form; the last ten-digit second.
        let now = wall_time() as u64;
        for other in [
            format!("events.out.tfevents.{now:010}.zzzz.1.0"),
            format!("events.out.tfevents.{:010}.host.1.0", now + 100),
            format!("events.out.tfevents.{:010}.host.1.0.v2", now + 200),
            "events.out.tfevents.9999999999.zzzz.1.0".to_string(),
            "zz.tfevents".to_string(),
        ] {
            std::fs::write(dir.path().join(&other), b"").unwrap();
            let name = last(dir.path());
            assert!(name > other, "{name} {other}");
        }
    }
}
