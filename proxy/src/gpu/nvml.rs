//! NVIDIA's NVML (`libnvidia-ml.so.1`, the driver's management library), only the calls the
//! proxy's GPU evidence needs. Layouts follow `nvml.h` (as NVIDIA's own `pynvml` declares
//! them, nvidia-ml-py 13.x). Built only with the `nvml` feature, which links the library;
//! never built or run in this project's CI (no NVIDIA GPU there): see docs/inference.md.

use std::ffi::{c_char, c_uint, c_void};
use std::io;
use std::sync::Mutex;

use omega_gpu_evidence::GpuEvidence;
use omega_proxy_evidence::{CcMode, Gpu, MAX_NAME};

type NvmlReturn = c_uint;
type NvmlDevice = *mut c_void;
const NVML_SUCCESS: NvmlReturn = 0;

const CERT_CHAIN_SIZE: usize = 0x1000;
const ATTESTATION_CERT_CHAIN_SIZE: usize = 0x1400;
const ATTESTATION_REPORT_SIZE: usize = 0x2000;
const CEC_ATTESTATION_REPORT_SIZE: usize = 0x1000;
const NONCE_SIZE: usize = 32;
const CC_FEATURE_ENABLED: c_uint = 1;
const DEVTOOLS_MODE_ON: c_uint = 1;

#[repr(C)]
struct ConfComputeSystemState {
    environment: c_uint,
    cc_feature: c_uint,
    dev_tools_mode: c_uint,
}

#[repr(C)]
struct ConfComputeGpuCertificate {
    cert_chain_size: c_uint,
    attestation_cert_chain_size: c_uint,
    cert_chain: [u8; CERT_CHAIN_SIZE],
    attestation_cert_chain: [u8; ATTESTATION_CERT_CHAIN_SIZE],
}

#[repr(C)]
struct ConfComputeGpuAttestationReport {
    is_cec_attestation_report_present: c_uint,
    attestation_report_size: c_uint,
    cec_attestation_report_size: c_uint,
    nonce: [u8; NONCE_SIZE],
    attestation_report: [u8; ATTESTATION_REPORT_SIZE],
    cec_attestation_report: [u8; CEC_ATTESTATION_REPORT_SIZE],
}

#[link(name = "nvidia-ml")]
unsafe extern "C" {
    fn nvmlInit_v2() -> NvmlReturn;
    fn nvmlDeviceGetHandleByIndex_v2(index: c_uint, device: *mut NvmlDevice) -> NvmlReturn;
    fn nvmlDeviceGetName(device: NvmlDevice, name: *mut c_char, length: c_uint) -> NvmlReturn;
    fn nvmlSystemGetConfComputeState(state: *mut ConfComputeSystemState) -> NvmlReturn;
    fn nvmlDeviceGetConfComputeGpuCertificate(
        device: NvmlDevice,
        cert: *mut ConfComputeGpuCertificate,
    ) -> NvmlReturn;
    fn nvmlDeviceGetConfComputeGpuAttestationReport(
        device: NvmlDevice,
        report: *mut ConfComputeGpuAttestationReport,
    ) -> NvmlReturn;
}

fn check(call: &str, ret: NvmlReturn) -> io::Result<()> {
    if ret == NVML_SUCCESS {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "NVML {call} failed with code {ret}"
        )))
    }
}

/// One GPU, opened through NVML.
pub struct NvmlGpu {
    /// NVML's handle; calls on it are serialised by the mutex.
    device: Mutex<NvmlDevice>,
    gpu: Gpu,
}

// SAFETY: an NVML device handle is an opaque pointer NVML documents as usable from any thread
// (NVML is thread-safe); this type only passes it to NVML, under its mutex.
unsafe impl Send for NvmlGpu {}
// SAFETY: as above; shared access only reaches the handle through the mutex.
unsafe impl Sync for NvmlGpu {}

impl NvmlGpu {
    /// Initialises NVML and opens GPU `index`; reads its name and the system's CC state.
    pub fn open(index: u32) -> io::Result<Self> {
        // SAFETY: nvmlInit_v2 takes no arguments and may be called more than once.
        check("nvmlInit_v2", unsafe { nvmlInit_v2() })?;
        let mut device: NvmlDevice = std::ptr::null_mut();
        // SAFETY: `device` is a valid out-pointer for the call's duration.
        check("nvmlDeviceGetHandleByIndex_v2", unsafe {
            nvmlDeviceGetHandleByIndex_v2(index, &mut device)
        })?;
        let mut name = [0 as c_char; 96];
        // SAFETY: `name` is writable for the length passed; NVML NUL-terminates within it.
        check("nvmlDeviceGetName", unsafe {
            nvmlDeviceGetName(device, name.as_mut_ptr(), name.len() as c_uint)
        })?;
        let name: Vec<u8> = name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .take(MAX_NAME)
            .collect();
        let model = String::from_utf8_lossy(&name).into_owned();
        let mut state = ConfComputeSystemState {
            environment: 0,
            cc_feature: 0,
            dev_tools_mode: 0,
        };
        // SAFETY: `state` is a valid out-pointer with nvml.h's layout.
        check("nvmlSystemGetConfComputeState", unsafe {
            nvmlSystemGetConfComputeState(&mut state)
        })?;
        let cc_mode = match (state.cc_feature, state.dev_tools_mode) {
            (CC_FEATURE_ENABLED, DEVTOOLS_MODE_ON) => CcMode::DevTools,
            (CC_FEATURE_ENABLED, _) => CcMode::On,
            _ => CcMode::Off,
        };
        Ok(Self {
            device: Mutex::new(device),
            gpu: Gpu::Nvidia { model, cc_mode },
        })
    }

    /// The evidence's `gpu` field.
    pub fn gpu(&self) -> Gpu {
        self.gpu.clone()
    }

    /// A fresh report for `nonce` and the attestation chain, encoded; `None` with CC off.
    pub fn evidence(&self, nonce: [u8; 32]) -> io::Result<Option<Vec<u8>>> {
        if matches!(
            self.gpu,
            Gpu::Nvidia {
                cc_mode: CcMode::Off,
                ..
            } | Gpu::None
        ) {
            return Ok(None);
        }
        let device = self
            .device
            .lock()
            .map_err(|_| io::Error::other("NVML lock poisoned"))?;
        // Both structures are large (17 KiB): on the heap.
        let mut report = Box::new(ConfComputeGpuAttestationReport {
            is_cec_attestation_report_present: 0,
            attestation_report_size: 0,
            cec_attestation_report_size: 0,
            nonce,
            attestation_report: [0; ATTESTATION_REPORT_SIZE],
            cec_attestation_report: [0; CEC_ATTESTATION_REPORT_SIZE],
        });
        // SAFETY: `report` is a valid, writable structure with nvml.h's layout; the device
        // handle came from NVML and is used under the mutex.
        check("nvmlDeviceGetConfComputeGpuAttestationReport", unsafe {
            nvmlDeviceGetConfComputeGpuAttestationReport(*device, &mut *report)
        })?;
        let mut cert = Box::new(ConfComputeGpuCertificate {
            cert_chain_size: 0,
            attestation_cert_chain_size: 0,
            cert_chain: [0; CERT_CHAIN_SIZE],
            attestation_cert_chain: [0; ATTESTATION_CERT_CHAIN_SIZE],
        });
        // SAFETY: as above, for the certificate structure.
        check("nvmlDeviceGetConfComputeGpuCertificate", unsafe {
            nvmlDeviceGetConfComputeGpuCertificate(*device, &mut *cert)
        })?;
        drop(device);
        // SECURITY: sizes come from the driver; never read past the buffers.
        let report_len = usize::try_from(report.attestation_report_size)
            .ok()
            .filter(|&n| n <= ATTESTATION_REPORT_SIZE)
            .ok_or_else(|| io::Error::other("NVML: attestation report size out of range"))?;
        let chain_len = usize::try_from(cert.attestation_cert_chain_size)
            .ok()
            .filter(|&n| n <= ATTESTATION_CERT_CHAIN_SIZE)
            .ok_or_else(|| io::Error::other("NVML: certificate chain size out of range"))?;
        let ev = GpuEvidence {
            report: report.attestation_report[..report_len].to_vec(),
            cert_chain_pem: cert.attestation_cert_chain[..chain_len].to_vec(),
        };
        ev.encode().map(Some).map_err(io::Error::other)
    }
}
