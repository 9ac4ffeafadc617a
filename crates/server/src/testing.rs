//! One way to run a real berth server inside another program (`test-util`): the tests,
//! the bench, the drills and the UI bench all start theirs here, on top of [`crate::run`]
//! — a loopback port, an engine started from the given configuration (and sandbox driver,
//! a fault injector for instance), its first administrator made — and talk to it through
//! [`crate::client::Client`].

use crate::client::Client;
use berth_engine::{Config, Engine, EngineError};
use berth_sandbox::SandboxDriver;
use std::sync::Arc;
use tokio::net::TcpListener;

pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub engine: Arc<Engine>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on the loopback address: {0}")]
    Listen(#[from] std::io::Error),
    #[error("the engine did not start: {0}")]
    Engine(#[from] EngineError),
}

impl TestServer {
    /// Serves `config` on a free loopback port (its sandboxes through `driver` when
    /// given, else the configured driver).
    pub async fn start(
        config: Config,
        driver: Option<Arc<dyn SandboxDriver>>,
    ) -> Result<TestServer, StartError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        TestServer::start_on(listener, config, driver).await
    }

    /// [`TestServer::start`] on a listener the caller bound already (to know the address
    /// before the configuration is written: `public_url`, an OpenID redirect).
    pub async fn start_on(
        listener: TcpListener,
        config: Config,
        driver: Option<Arc<dyn SandboxDriver>>,
    ) -> Result<TestServer, StartError> {
        let url = format!("http://{}", listener.local_addr()?);
        let engine = match driver {
            Some(driver) => Engine::start_with_driver(config, driver).await?,
            None => Engine::start(config).await?,
        };
        engine.accounts.ensure_admin().await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(crate::run(listener, Arc::clone(&engine), async {
            let _ = stopped.await;
        }));
        Ok(TestServer { url, engine, stop: Some(stop), served: Some(served) })
    }

    /// A client of this server signed in with `token`.
    pub fn client(&self, token: &str) -> Client {
        Client::new(&self.url, token)
    }

    /// Lets go of the server without stopping it: nothing will ever tell it to stop, so
    /// its tasks go with their runtime as a killed process's would (a crash, for the
    /// tests of what the next start cleans up).
    pub fn abandon(mut self) {
        std::mem::forget(self.stop.take());
    }

    /// Stops the server as `berth serve` stops on SIGTERM: requests drained, every
    /// session ended, background work stopped.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.served.take() {
            Some(served) => served.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}
