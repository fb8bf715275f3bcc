//! A TCP gate in front of a server: open, it forwards every connection; closed, the port
//! refuses connections and the forwarded ones are cut, as when the server is down.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Forwards `127.0.0.1:port` to a target while open.
pub struct Gate {
    pub port: u16,
    target: SocketAddr,
    open: Option<Forwarding>,
}

struct Forwarding {
    stop: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    accept: JoinHandle<()>,
}

impl Gate {
    /// An open gate on a free port in front of `target` (`host:port`).
    pub fn open_to(target: &str) -> Self {
        let target = target.parse().expect("a socket address");
        let mut gate = Self {
            port: super::free_port(),
            target,
            open: None,
        };
        gate.open();
        gate
    }

    /// The URL of the gate for an HTTP server behind it.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Listens (again) and forwards.
    pub fn open(&mut self) {
        if self.open.is_some() {
            return;
        }
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("bind the gate");
        listener.set_nonblocking(true).expect("non-blocking");
        let stop = Arc::new(AtomicBool::new(false));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (target, accept_stop, accept_streams) = (self.target, stop.clone(), streams.clone());
        let accept = std::thread::spawn(move || {
            while !accept_stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(target) else {
                            continue;
                        };
                        forward(client, server, &accept_streams);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        self.open = Some(Forwarding {
            stop,
            streams,
            accept,
        });
    }

    /// Stops listening (connections are refused) and cuts every forwarded connection.
    pub fn close(&mut self) {
        if let Some(open) = self.open.take() {
            open.stop.store(true, Ordering::Release);
            let _ = open.accept.join();
            for stream in open.streams.lock().unwrap().drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.close();
    }
}

/// Copies both ways between `client` and `server` on two threads, remembering both
/// streams so that [`Gate::close`] can cut them.
fn forward(client: TcpStream, server: TcpStream, streams: &Mutex<Vec<TcpStream>>) {
    let clones = (client.try_clone(), server.try_clone());
    let (Ok(client_out), Ok(server_out)) = clones else {
        return;
    };
    {
        let mut streams = streams.lock().unwrap();
        streams.retain(|s| s.peer_addr().is_ok());
        if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
            streams.extend([a, b]);
        }
    }
    std::thread::spawn(move || pipe(client, server_out));
    std::thread::spawn(move || pipe(server, client_out));
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
