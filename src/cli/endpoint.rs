//! The API a command talks to: the real one with the key, or the simulator `--sim` starts.

use anyhow::{Context, anyhow, bail};

use crate::api::{ApiKey, Client, ClientConfig};

use super::*;

/// What keeps the simulator `--sim` started serving while a command runs.
#[cfg(not(feature = "sim"))]
pub(super) type EmbeddedSim = std::convert::Infallible;
#[cfg(feature = "sim")]
use sim::{EmbeddedSim, start_embedded};

/// Without the `sim` feature there is no simulator to start.
#[cfg(not(feature = "sim"))]
pub(super) async fn start_embedded() -> anyhow::Result<(String, EmbeddedSim)> {
    bail!("--sim: this vidbatch was built without the simulator (the `sim` feature)")
}

/// The API client of a command, and the simulator it started, if any.
pub(super) async fn connect(api: &ApiArgs) -> anyhow::Result<(Client, Option<EmbeddedSim>)> {
    let (base_url, key, sim) = if api.sim {
        let (base_url, sim) = start_embedded().await?;
        (base_url, ApiKey::new("sim-key"), Some(sim))
    } else {
        let key = match (&api.api_key_file, &api.api_key) {
            (Some(path), _) => ApiKey::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the API key from {}", path.display()))?,
            ),
            (None, Some(k)) => ApiKey::new(k.clone()),
            (None, None) => ApiKey::new(""),
        };
        if key.is_empty() {
            bail!("no API key: set ALLTOKEN_API_KEY or --api-key-file (or try --sim)");
        }
        (api.base_url.clone(), key, None)
    };
    let mut config = ClientConfig::new(base_url, key);
    config.request_timeout = api.request_timeout;
    let client = Client::new(&config).map_err(|e| anyhow!("{e}"))?;
    Ok((client, sim))
}
