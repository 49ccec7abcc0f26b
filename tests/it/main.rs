//! vidbatch's integration tests, one binary: the real binary and the real client against
//! servers on 127.0.0.1 (the simulator, or small hostile ones). `util` holds what they share.

mod util;

mod agreement;
mod bounds;
mod chains;
mod cli;
mod client;
mod compaction;
mod display;
mod download;
mod dry_run;
mod exit_codes;
mod faults;
mod hostile;
mod json_logs;
mod kill;
mod manifest;
mod money;
mod outputs;
mod report;
mod run;
mod security;
mod sheets;
mod terminal;
mod world;
