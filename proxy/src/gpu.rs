//! The GPU behind the backend, as the proxy's evidence names it.
//!
//! Default build: [`GpuSource::None`] — the evidence says `gpu: none`, whatever hardware the
//! machine has, because nothing here has looked. With the cargo feature `nvml` and
//! `serve --gpu-evidence nvml`, the proxy opens the NVIDIA driver's NVML, names the GPU and
//! its confidential-computing mode, and per guest connection asks the GPU for an SPDM
//! attestation report over [`omega_proxy_evidence::gpu_nonce`] (the guest's nonce and this
//! proxy's TLS key), sent with the GPU's attestation certificate chain as
//! `omega_gpu_evidence::GpuEvidence`. A GPU with CC off is named with `cc_mode: Off` and no
//! evidence (it cannot produce any).

use std::io;

use omega_proxy_evidence::Gpu;

#[cfg(feature = "nvml")]
pub mod nvml;

/// Where the evidence's `gpu` and `gpu_evidence` come from.
#[derive(Clone, Default)]
pub enum GpuSource {
    /// No GPU is claimed (the default build; the CPU backend).
    #[default]
    None,
    /// An NVIDIA GPU through NVML (feature `nvml`).
    #[cfg(feature = "nvml")]
    Nvml(std::sync::Arc<nvml::NvmlGpu>),
}

impl GpuSource {
    /// NVML's GPU `index` (feature `nvml`), else an error saying how to get it.
    pub fn nvml(index: u32) -> io::Result<Self> {
        #[cfg(feature = "nvml")]
        {
            Ok(Self::Nvml(std::sync::Arc::new(nvml::NvmlGpu::open(index)?)))
        }
        #[cfg(not(feature = "nvml"))]
        {
            let _ = index;
            Err(io::Error::other(
                "GPU evidence needs omega-proxy built with the `nvml` feature (and NVIDIA's driver)",
            ))
        }
    }

    /// The `gpu` field: fixed for the life of the process.
    pub fn gpu(&self) -> Gpu {
        match self {
            Self::None => Gpu::None,
            #[cfg(feature = "nvml")]
            Self::Nvml(g) => g.gpu(),
        }
    }

    /// The encoded GPU evidence for `gpu_nonce`, when this GPU can attest (CC on). Blocking
    /// (NVML talks to the GPU): call it off the async runtime.
    pub fn evidence(&self, gpu_nonce: [u8; 32]) -> io::Result<Option<Vec<u8>>> {
        match self {
            Self::None => {
                let _ = gpu_nonce;
                Ok(None)
            }
            #[cfg(feature = "nvml")]
            Self::Nvml(g) => g.evidence(gpu_nonce),
        }
    }
}
