//! vidbatch: turn a manifest of prompts into generated videos.
pub mod sim;
