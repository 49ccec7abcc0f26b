//! The API's success bodies on arbitrary bytes: a task, a task list, the model list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vidbatch::api::{ModelList, Task, TaskList};

fuzz_target!(|data: &[u8]| {
    if let Ok(task) = serde_json::from_slice::<Task>(data) {
        // What the runner does with a task it read.
        let _ = task.status.as_str();
        let _ = serde_json::to_string(&task);
    }
    let _ = serde_json::from_slice::<TaskList>(data);
    let _ = serde_json::from_slice::<ModelList>(data);
});
