//! Inference stream: opaque (TLS) bytes relayed to and from the inference proxy over TCP.

use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use omega_wire::Stream;
use tracing::info;

use super::tcp::{TcpPipe, tcp_to_guest};
use super::{Inbox, Input, Relay};
use crate::session::send::Shared;

pub(crate) struct InferenceRelay {
    sh: Arc<Shared>,
    proxy: String,
    pipe: TcpPipe,
    /// Proxy-to-guest threads, one per connection.
    readers: Vec<JoinHandle<()>>,
}

impl InferenceRelay {
    pub(crate) fn new(sh: &Arc<Shared>, proxy: String) -> Self {
        InferenceRelay {
            sh: Arc::clone(sh),
            proxy,
            pipe: TcpPipe::new(Stream::Inference, "inference proxy"),
            readers: Vec::new(),
        }
    }
}

impl Relay for InferenceRelay {
    fn stream(&self) -> Stream {
        Stream::Inference
    }

    fn on_input(&mut self, sh: &Shared, input: Input, _: &mut Inbox) -> ControlFlow<()> {
        // The proxy connection, made when there is none (first use, after a write error or
        // the guest's close).
        self.pipe.on_input(sh, input, || {
            let c =
                connect(&self.proxy).map_err(|e| format!("inference proxy {}: {e}", self.proxy))?;
            info!("inference proxy connected: {}", self.proxy);
            if let Ok(rc) = c.try_clone() {
                let sh = Arc::clone(&self.sh);
                self.readers.push(thread::spawn(move || {
                    tcp_to_guest(&sh, Stream::Inference, rc)
                }));
            }
            Ok(c)
        })
    }

    fn finish(self, _: &Shared) {
        self.pipe.finish();
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
