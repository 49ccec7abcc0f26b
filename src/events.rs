//! The one contract between the runner and everything that watches it; the main structure here is [`Event`].
//!
//! The runner emits events; the journal writes them to `state.jsonl` (so an event is also a
//! journal record), the display shows them, and the report is folded from them. A create's
//! intent and a failure are marked durable: they reach the disk before the runner takes its
//! next step. Every other record is written in a batch soon after and synced with the next
//! durable one (see [`Event::is_durable`]).

use serde::{Deserialize, Serialize};

use crate::api::{CreateRequest, TaskStatus, Timestamp, Usage};
pub use crate::state::{Counters, Failure, FailureKind, RunOutcome, SourceRecord};
use crate::state::{JobState, RunSnapshot};

/// The reason [`Event::SubmissionsStopped`] gives when Ctrl-C or SIGTERM stopped the run.
pub const INTERRUPTED: &str = "interrupted";

/// The format of [`Event::Snapshot`] and [`Event::JobSnapshot`] records.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Defines [`Event`] (written internally tagged, `{"event": "submitted", ...}`) and its
/// externally tagged twin, which serde reads without buffering each line first.
macro_rules! events {
    (
        $(#[$enum_attr:meta])*
        pub enum Event {
            $(
                $(#[$variant_attr:meta])*
                $variant:ident {
                    $(
                        $(#[$field_attr:meta])*
                        $field:ident : $ty:ty
                    ),* $(,)?
                }
            ),* $(,)?
        }
    ) => {
        $(#[$enum_attr])*
        pub enum Event {
            $(
                $(#[$variant_attr])*
                $variant {
                    $( $(#[$field_attr])* $field: $ty ),*
                }
            ),*
        }

        /// [`Event`] with its variant as the key around its fields, for reading.
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Tagged {
            $( $variant { $( $(#[$field_attr])* $field: $ty ),* } ),*
        }

        impl From<Tagged> for Event {
            fn from(t: Tagged) -> Event {
                match t {
                    $( Tagged::$variant { $($field),* } => Event::$variant { $($field),* } ),*
                }
            }
        }
    };
}

events! {
/// Something that happened in a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A run began (a new one or a resumed one).
    RunStarted {
        /// Id of the run's state (kept across resumes).
        run_id: String,
        /// When.
        at: Timestamp,
        /// vidbatch version.
        tool_version: String,
        /// Settings in effect (never the key).
        settings: serde_json::Value,
        /// Manifest files and their sha256.
        manifests: Vec<SourceRecord>,
        /// Jobs in this run's plan.
        total_jobs: usize,
        /// `K/N` when sharded.
        shard: Option<String>,
        /// Ids of this run's plan (absent from journals of earlier versions: then every job of
        /// the state counts as planned).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plan: Option<Vec<String>>,
    },
    /// A job of the plan, as first seen (or seen changed).
    JobPlanned {
        /// Job id.
        job: String,
        /// File stem of its outputs.
        name: String,
        /// sha256 of the canonical request.
        fingerprint: String,
        /// The request to send.
        request: Box<CreateRequest>,
        /// Where the job came from (file:line:col or file row).
        source: String,
        /// Estimated tokens, when known.
        estimated_tokens: Option<u64>,
    },
    /// About to send a create for the job (durable).
    SubmitIntent {
        /// Job id.
        job: String,
        /// Create attempt number, from 1.
        attempt: u32,
        /// The `Idempotency-Key` sent.
        idempotency_key: String,
        /// The seed vidbatch drew for a job that sets none (sent with the create, echoed by the
        /// task, so the task can be told from any look-alike).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seed: Option<i64>,
        /// When (vidbatch's clock).
        at: Timestamp,
    },
    /// The create was answered and made no task (e.g. 429, 400, 402).
    SubmitNotCreated {
        /// Job id.
        job: String,
        /// Why.
        reason: String,
    },
    /// The job has a task on the server.
    Submitted {
        /// Job id.
        job: String,
        /// Task id.
        task_id: String,
        /// When.
        at: Timestamp,
        /// True when found by listing after a lost answer rather than from the create answer.
        reconciled: bool,
    },
    /// The task changed status on the server (not yet final).
    TaskProgress {
        /// Job id.
        job: String,
        /// Task id.
        task_id: String,
        /// New status.
        status: TaskStatus,
        /// When seen.
        at: Timestamp,
    },
    /// The task finished generating and its video can be fetched.
    TaskCompleted {
        /// Job id.
        job: String,
        /// Task id.
        task_id: String,
        /// Tokens billed.
        usage: Option<Usage>,
        /// When the server says it finished.
        completed_at: Option<Timestamp>,
        /// When the server says it started.
        created_at: Option<Timestamp>,
        /// When the video URL given with the completed task stops working.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        video_url_expires_at: Option<Timestamp>,
        /// When seen.
        at: Timestamp,
    },
    /// A request or download failed and will be tried again.
    Retrying {
        /// Job id, when the failure belongs to one.
        job: Option<String>,
        /// What is retried: `create`, `poll`, `download`, `reconcile`, ...
        what: String,
        /// Attempt about to start.
        attempt: u32,
        /// The error.
        error: String,
        /// Wait before the attempt, in milliseconds.
        wait_ms: u64,
    },
    /// The server said slow down; the whole limiter waits.
    RateLimited {
        /// How long everything waits, in milliseconds.
        wait_ms: u64,
        /// The request rate now aimed at, per minute.
        rpm_now: f64,
    },
    /// The request pacer began or stopped holding requests back (display only, not journaled).
    Throttled {
        /// What holds them now; none when requests flow again.
        by: Option<Throttle>,
    },
    /// A download's URL had expired or was refused; the task is read again for a fresh one.
    UrlRefreshed {
        /// Job id.
        job: String,
        /// HTTP status of the refused URL (0 when it was past its expiry before use).
        status: u16,
    },
    /// The job's video (and last frame) are on disk and verified (synced at the end of the run).
    JobDone {
        /// Job id.
        job: String,
        /// Task id.
        task_id: String,
        /// Video path, relative to the out dir.
        path: String,
        /// File size.
        bytes: u64,
        /// File sha256.
        sha256: String,
        /// Last frame path, relative to the out dir, when asked for.
        last_frame: Option<String>,
        /// When.
        at: Timestamp,
    },
    /// The job failed (durable).
    JobFailed {
        /// Job id.
        job: String,
        /// Task id, when one existed.
        task_id: Option<String>,
        /// Why.
        failure: Failure,
        /// When.
        at: Timestamp,
    },
    /// A file recorded as done was missing or corrupt and will be fetched again.
    FileInvalid {
        /// Job id.
        job: String,
        /// What was wrong.
        reason: String,
    },
    /// A failed job is opened again (`--retry-failed`).
    JobReopened {
        /// Job id.
        job: String,
    },
    /// A job's task is gone with the server that held it (the simulator of an earlier `--sim`
    /// run, which stopped with that run): the job is made again, and nothing was paid.
    TaskGone {
        /// Job id.
        job: String,
        /// The task that is gone, when the job had one.
        task_id: Option<String>,
    },
    /// Something the person running the batch should know (display only, not journaled).
    Notice {
        /// What.
        message: String,
    },
    /// New submissions stop (fatal API condition, failure limit, budget or interrupt).
    SubmissionsStopped {
        /// Why.
        reason: String,
    },
    /// The run-wide state as a compaction left it: replaces every run-wide record before it.
    Snapshot {
        /// The record's format ([`SNAPSHOT_VERSION`]).
        version: u32,
        /// The state.
        run: Box<RunSnapshot>,
    },
    /// One job's whole state as a compaction left it: replaces every record of the job before it.
    JobSnapshot {
        /// The job's state.
        state: Box<JobState>,
    },
    /// The run ended.
    RunFinished {
        /// When.
        at: Timestamp,
        /// How it ended.
        outcome: RunOutcome,
        /// Counts for the report.
        counters: Counters,
    },
}
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Event, D::Error> {
        d.deserialize_map(tagged::EventVisitor)
    }
}

/// Reading an internally tagged event without buffering it: the tag is read first (vidbatch
/// writes it first) and the rest of the object is handed to the externally tagged twin.
mod tagged {
    use std::fmt;

    use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
    use serde::forward_to_deserialize_any;

    use super::{Event, Tagged};

    pub(super) struct EventVisitor;

    impl<'de> Visitor<'de> for EventVisitor {
        type Value = Event;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a vidbatch event object with an \"event\" tag")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
            let Some(first) = map.next_key::<String>()? else {
                return Err(de::Error::missing_field("event"));
            };
            if first == "event" {
                let tag: String = map.next_value()?;
                return de::Deserialize::deserialize(Rest { tag, map }).map(|t: Tagged| t.into());
            }
            // The tag is not first (a hand-edited line): gather the object, then read it.
            let mut fields = serde_json::Map::new();
            fields.insert(first, map.next_value()?);
            while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                fields.insert(k, v);
            }
            let tag = match fields.remove("event") {
                Some(serde_json::Value::String(tag)) => tag,
                _ => return Err(de::Error::missing_field("event")),
            };
            let outer =
                serde_json::Value::Object([(tag, serde_json::Value::Object(fields))].into_iter().collect());
            serde_json::from_value::<Tagged>(outer)
                .map(Event::from)
                .map_err(de::Error::custom)
        }
    }

    /// The tag and the rest of the object, seen as an externally tagged enum.
    struct Rest<A> {
        tag: String,
        map: A,
    }

    impl<'de, A: MapAccess<'de>> de::Deserializer<'de> for Rest<A> {
        type Error = A::Error;

        fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
            visitor.visit_enum(self)
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, A::Error> {
            visitor.visit_enum(self)
        }

        forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
            ignored_any
        }
    }

    impl<'de, A: MapAccess<'de>> de::EnumAccess<'de> for Rest<A> {
        type Error = A::Error;
        type Variant = Fields<A>;

        fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Fields<A>), A::Error> {
            let tag: de::value::StringDeserializer<A::Error> = self.tag.into_deserializer();
            Ok((seed.deserialize(tag)?, Fields(self.map)))
        }
    }

    /// The fields after the tag.
    struct Fields<A>(A);

    impl<'de, A: MapAccess<'de>> de::VariantAccess<'de> for Fields<A> {
        type Error = A::Error;

        fn unit_variant(self) -> Result<(), A::Error> {
            Err(de::Error::custom("every event has fields"))
        }

        fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value, A::Error> {
            Err(de::Error::custom("every event has named fields"))
        }

        fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, A::Error> {
            Err(de::Error::custom("every event has named fields"))
        }

        fn struct_variant<V: Visitor<'de>>(
            self,
            _fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, A::Error> {
            visitor.visit_map(self.0)
        }
    }
}

impl Event {
    /// The job the event is about, if any.
    pub fn job(&self) -> Option<&str> {
        match self {
            Event::JobPlanned { job, .. }
            | Event::SubmitIntent { job, .. }
            | Event::SubmitNotCreated { job, .. }
            | Event::Submitted { job, .. }
            | Event::TaskProgress { job, .. }
            | Event::TaskCompleted { job, .. }
            | Event::UrlRefreshed { job, .. }
            | Event::JobDone { job, .. }
            | Event::JobFailed { job, .. }
            | Event::FileInvalid { job, .. }
            | Event::JobReopened { job }
            | Event::TaskGone { job, .. } => Some(job),
            Event::Retrying { job, .. } => job.as_deref(),
            _ => None,
        }
    }

    /// Whether the record must reach the disk before the runner goes on.
    ///
    /// The journal is one append-only file, so a sync puts every earlier record on disk too,
    /// and a power cut keeps a prefix of it that ends at or after the last sync. A create's
    /// intent must be on disk before the create is sent: it is what keeps a create from being
    /// sent twice. The task record need not wait: it is written before the next look-alike
    /// create's intent, whose sync covers it, so a power cut leaves at most one create per
    /// look-alike group without its task on disk, and listing gives that one its own task.
    /// `JobDone` need not wait either: should a power cut lose the record or the video's bytes
    /// (synced once at the end of the run), the next run verifies the file and fetches it again
    /// from its task, which costs a transfer but no tokens.
    pub fn is_durable(&self) -> bool {
        matches!(
            self,
            Event::SubmitIntent { .. }
                | Event::JobFailed { .. }
                | Event::RunStarted { .. }
                | Event::RunFinished { .. }
        )
    }

    /// Whether the journal keeps the event (display-only events are not kept).
    pub fn is_journaled(&self) -> bool {
        !matches!(
            self,
            Event::RateLimited { .. } | Event::Throttled { .. } | Event::Notice { .. }
        )
    }
}

/// What holds requests back while a run is throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Throttle {
    /// The `--rpm`/`--burst` token bucket: requests have waited for a token for a while.
    Rpm,
    /// A 429's pause: every request waits until it has passed.
    RateLimited,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_with_the_tag_first_or_anywhere() {
        let events = vec![
            Event::Submitted {
                job: "a".into(),
                task_id: "vgen_1".into(),
                at: Timestamp::now(),
                reconciled: true,
            },
            Event::JobReopened { job: "b".into() },
            Event::RateLimited {
                wait_ms: 5,
                rpm_now: 12.5,
            },
            Event::Throttled {
                by: Some(Throttle::RateLimited),
            },
            Event::Throttled { by: None },
        ];
        for e in events {
            let line = serde_json::to_string(&e).unwrap();
            assert!(line.starts_with(r#"{"event":""#), "{line}");
            assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e);
            // A line whose tag is not first still reads.
            let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&line).unwrap();
            let tag = v.remove("event").unwrap();
            v.insert("event".into(), tag);
            let moved = serde_json::to_string(&v).unwrap();
            assert_eq!(serde_json::from_str::<Event>(&moved).unwrap(), e);
        }
        // Unknown fields are ignored; an unknown event is an error.
        let extra = r#"{"event":"job_reopened","job":"c","new_field":1}"#;
        assert_eq!(
            serde_json::from_str::<Event>(extra).unwrap(),
            Event::JobReopened { job: "c".into() }
        );
        assert!(serde_json::from_str::<Event>(r#"{"event":"no_such_event","job":"c"}"#).is_err());
        assert!(serde_json::from_str::<Event>(r#"{"job":"c"}"#).is_err());
        assert!(serde_json::from_str::<Event>("[1,2]").is_err());
    }
}
