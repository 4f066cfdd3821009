//! Inference stream: opaque (TLS) bytes relayed to and from the inference proxy over TCP.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use omega_wire::{MAX_PAYLOAD, Stream, msg::code};
use tracing::{info, warn};

use super::{Inbox, Input, Relay};
use crate::session::send::Shared;

pub(crate) struct InferenceRelay {
    sh: Arc<Shared>,
    proxy: String,
    conn: Option<TcpStream>,
    /// Proxy-to-guest threads, one per connection.
    readers: Vec<JoinHandle<()>>,
}

impl InferenceRelay {
    pub(crate) fn new(sh: &Arc<Shared>, proxy: String) -> Self {
        InferenceRelay {
            sh: Arc::clone(sh),
            proxy,
            conn: None,
            readers: Vec::new(),
        }
    }

    /// The proxy connection, made on first use.
    fn connection(&mut self) -> io::Result<&mut TcpStream> {
        if self.conn.is_none() {
            let c = connect(&self.proxy)?;
            info!("inference proxy connected: {}", self.proxy);
            if let Ok(rc) = c.try_clone() {
                let sh = Arc::clone(&self.sh);
                self.readers
                    .push(thread::spawn(move || proxy_to_guest(&sh, rc)));
            }
            self.conn = Some(c);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }
}

impl Relay for InferenceRelay {
    const STREAM: Stream = Stream::Inference;

    fn on_input(&mut self, sh: &Shared, input: Input, _: &mut Inbox) -> ControlFlow<()> {
        let bytes = match input {
            Input::Data { payload, .. } => payload,
            Input::Close => {
                if let Some(c) = self.conn.take() {
                    let _ = c.shutdown(Shutdown::Write);
                }
                return ControlFlow::Continue(());
            }
            Input::File(..) => return ControlFlow::Continue(()),
        };
        match self.connection() {
            // Credit comes back only once the proxy took the bytes: a stalled proxy stalls
            // the guest's Inference stream (and nothing else).
            Ok(c) => {
                if let Err(e) = c.write_all(&bytes) {
                    let m = format!("inference proxy write: {e}");
                    sh.send_error(Stream::Inference, code::BACKEND, &m);
                    self.conn = None;
                }
            }
            Err(e) => {
                let m = format!("inference proxy {}: {e}", self.proxy);
                warn!("{m}");
                sh.backend_error(Stream::Inference, m.clone());
                sh.send_error(Stream::Inference, code::BACKEND, &m);
            }
        }
        sh.consumed(Stream::Inference, bytes.len());
        ControlFlow::Continue(())
    }

    fn finish(self, _: &Shared) {
        if let Some(c) = self.conn {
            let _ = c.shutdown(Shutdown::Both);
        }
        for r in self.readers {
            let _ = r.join();
        }
    }
}

fn connect(addr: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing");
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn proxy_to_guest(sh: &Shared, mut c: TcpStream) {
    let mut buf = vec![0u8; MAX_PAYLOAD];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if sh.send_message(Stream::Inference, &buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    sh.send_close(Stream::Inference);
}
