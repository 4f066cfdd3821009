//! The proxy's evidence-bound TLS port.
//!
//! Every connection starts with the cleartext evidence exchange of `omega-proxy-evidence`
//! (`exchange`): the guest sends its nonce, the proxy answers the evidence for that nonce,
//! which names its TLS key. Then TLS 1.3 (rustls, ring) with that key as a raw public key
//! (RFC 7250), and inside it the same HTTP API as the plain socket. The guest checks the
//! evidence before the handshake and accepts no other key.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use omega_proxy_evidence::exchange::{self, REQUEST_LEN};
use omega_proxy_evidence::{NONCE_LEN, ProxyEvidence, Tee};
use rustls::ServerConfig;
use rustls::crypto::ring as provider;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use rustls::server::AlwaysResolvesServerRawPublicKeys;
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::engine::BACKEND;
use crate::gpu::GpuSource;
use crate::tls_key::TlsKey;

/// Time a client has for the evidence request and the TLS handshake together.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections in the evidence exchange or handshake at once; more wait to be accepted.
pub const MAX_PENDING: usize = 64;

/// What the proxy's evidence says about it, fixed for the life of the process; the nonce (and
/// with a GPU, its fresh report) is added per connection.
#[derive(Clone)]
pub struct EvidenceSource {
    pub proxy_sha256: [u8; 32],
    /// The model file's SHA-256, or [`omega_proxy_evidence::MODEL_NOT_HASHED`] (upstream).
    pub model_sha256: [u8; 32],
    pub tls_spki: Vec<u8>,
    /// The backend's name in the evidence (`llama.cpp-cpu`, `openai-upstream:<model>`, …).
    pub backend: String,
    /// The GPU the evidence names (none unless built with `nvml` and asked for).
    pub gpu: GpuSource,
}

impl EvidenceSource {
    /// This process: its executable's digest (hashed once, here), the model's, the key's
    /// SPKI; the llama.cpp backend and no GPU.
    pub fn for_this_process(model_sha256: [u8; 32], key: &TlsKey) -> io::Result<Self> {
        Ok(Self {
            proxy_sha256: crate::evidence::sha256_file(&std::env::current_exe()?)?,
            model_sha256,
            tls_spki: key.spki(),
            backend: BACKEND.into(),
            gpu: GpuSource::None,
        })
    }

    /// The evidence for `nonce`. It says `tee: none` (no TEE report is requested yet) and
    /// names a GPU only when [`GpuSource`] has one; blocking when it does (NVML).
    pub fn evidence(&self, nonce: [u8; NONCE_LEN]) -> io::Result<ProxyEvidence> {
        let gpu_evidence = self
            .gpu
            .evidence(omega_proxy_evidence::gpu_nonce(&self.tls_spki, &nonce))?;
        Ok(ProxyEvidence::new(
            self.proxy_sha256,
            self.model_sha256,
            self.backend.clone(),
            Tee::None,
            self.gpu.gpu(),
            gpu_evidence,
            self.tls_spki.clone(),
            nonce,
        ))
    }

    /// The identity a policy pins for this proxy (`model … { proxy "sha256:…" }`).
    pub fn identity(&self) -> [u8; 32] {
        omega_proxy_evidence::identity(
            &self.proxy_sha256,
            &self.model_sha256,
            &self.backend,
            Tee::None,
            &self.gpu.gpu(),
        )
    }
}

/// The rustls server configuration: TLS 1.3 only, `key` as a raw public key.
pub fn server_config(key: &TlsKey) -> Result<ServerConfig, rustls::Error> {
    let signer = provider::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(key.to_pkcs8()))?;
    let certified = Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(key.spki())],
        signer,
    ));
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(certified)));
    // SECURITY: no tickets, no resumption: every connection gets fresh evidence and a full
    // handshake with the evidence's key.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// A listener whose connections have passed the evidence exchange and the TLS handshake, for
/// `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` (from a task on the current runtime): exchange and handshake run per
    /// connection, at most [`MAX_PENDING`] at once, each within [`SETUP_TIMEOUT`].
    pub fn new(tcp: TcpListener, config: ServerConfig, source: EvidenceSource) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(16);
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let source = Arc::new(source);
        tokio::spawn(accept_loop(tcp, acceptor, source, tx));
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop ended (its listener failed): no more connections, ever.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    source: Arc<EvidenceSource>,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING));
    loop {
        // SECURITY: bounds the connections that hold a task and a buffer before they have
        // completed the handshake (clients that connect and stay silent).
        let Ok(permit) = pending.clone().acquire_owned().await else {
            return;
        };
        let (sock, peer) = match tcp.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("TLS port accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let source = source.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let setup = tokio::time::timeout(SETUP_TIMEOUT, setup(sock, &acceptor, &source));
            let result = setup.await;
            drop(permit);
            match result {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::info!("TLS client {peer}: {e}"),
                Err(_) => tracing::info!("TLS client {peer}: evidence or handshake timed out"),
            }
        });
    }
}

/// The evidence exchange, then the handshake.
async fn setup(
    mut sock: TcpStream,
    acceptor: &TlsAcceptor,
    source: &EvidenceSource,
) -> io::Result<TlsStream<TcpStream>> {
    // Streamed chunks are small (see server::serve).
    sock.set_nodelay(true)?;
    let mut request = [0u8; REQUEST_LEN];
    sock.read_exact(&mut request).await?;
    let nonce = exchange::parse_request(&request)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let evidence = match source.gpu {
        GpuSource::None => source.evidence(nonce)?,
        // NVML blocks while the GPU signs: off the runtime's worker threads.
        #[allow(unreachable_patterns)]
        _ => {
            let source = source.clone();
            tokio::task::spawn_blocking(move || source.evidence(nonce))
                .await
                .map_err(io::Error::other)??
        }
    };
    let response =
        exchange::response(&evidence).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    sock.write_all(&response).await?;
    acceptor.accept(sock).await
}
