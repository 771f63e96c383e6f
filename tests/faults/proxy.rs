//! A test-only Docker engine socket in front of the real one, which a test can cut (every
//! connection closed, the socket gone) and restore, so the agent sees its engine go away and
//! come back without the shared dockerd being touched.

use std::{
    io,
    os::unix::net::{UnixListener, UnixStream},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

const ENGINE: &str = "/var/run/docker.sock";

pub struct EngineProxy {
    pub path: PathBuf,
    up: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<UnixStream>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl EngineProxy {
    /// A proxy listening at `path`.
    pub fn start(path: &Path) -> EngineProxy {
        let mut p = EngineProxy {
            path: path.to_owned(),
            up: Arc::new(AtomicBool::new(false)),
            live: Arc::default(),
            acceptor: None,
        };
        p.restore();
        p
    }

    /// The engine goes away: open connections are closed and new ones refused.
    pub fn cut(&mut self) {
        self.up.store(false, Ordering::SeqCst);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// The engine answers again.
    pub fn restore(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).expect("bind the engine proxy");
        listener.set_nonblocking(true).unwrap();
        self.up.store(true, Ordering::SeqCst);
        let (up, live) = (self.up.clone(), self.live.clone());
        self.acceptor = Some(std::thread::spawn(move || {
            while up.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        if let Ok(engine) = UnixStream::connect(ENGINE) {
                            splice(client, engine, &live);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(_) => return,
                }
            }
        }));
    }
}

/// Copies both ways until either side closes.
fn splice(client: UnixStream, engine: UnixStream, live: &Mutex<Vec<UnixStream>>) {
    let mut open = live.lock().unwrap();
    for s in [&client, &engine] {
        if let Ok(c) = s.try_clone() {
            open.push(c);
        }
    }
    let pairs = [
        (client.try_clone(), engine.try_clone()),
        (Ok(engine), Ok(client)),
    ];
    for pair in pairs {
        if let (Ok(mut from), Ok(mut to)) = pair {
            std::thread::spawn(move || {
                let _ = io::copy(&mut from, &mut to);
                let _ = to.shutdown(std::net::Shutdown::Both);
            });
        }
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.cut();
    }
}
