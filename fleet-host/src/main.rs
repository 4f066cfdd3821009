//! `omega-fleet`: the fleet's host processes (docs/fleet.md).
//!
//! ```text
//! omega-fleet keygen --out FILE                      # a key seed (hex); prints the public key
//! omega-fleet policy --source P.json --owner-key F --out P.signed [--nitro-root PEM]
//! omega-fleet coordinator --etcd URL --fleet F --owner HEX --policy P.signed --lab-root \
//!     --key F --state F [--min-policy-version N]     # the coordinator in this process (stand-in)
//! omega-fleet coordinator --etcd URL --fleet F --owner HEX --policy P.signed --lab-root \
//!     --in-image --omega BIN --image IMG --coordinator-bundle DIR --run-dir DIR \
//!     [--endorsement FILE]                           # the coordinator in an Omega image, relayed
//! omega-fleet endorse --evidence RUN_DIR/log/evidence/coordinator.bin --nonce HEX --image IMG \
//!     [--vcpus N --vcpu-type T] --lab-root --owner-key F --fleet F --lifetime SECS --out FILE
//!                                                    # the owner endorses a verified coordinator
//! omega-fleet scheduler --etcd URL --fleet F
//! omega-fleet node --etcd URL --fleet F --id N (--coordinator HEX | --owner HEX) --omega BIN \
//!     --image IMG --work DIR
//! omega-fleet submit --etcd URL --fleet F --workload W --bundle DIR --role R [--peer W2]
//! omega-fleet submit-tee --etcd URL --fleet F --workload W --node N --coordinator HEX \
//!     --node-key HEX (--tdx QUOTE --collateral JSON | --nitro DOC)
//! omega-fleet bench-admission --log-dir DIR --iterations N   # DIR: an omega run --log-dir
//! ```
//!
//! The coordinator is `omega_fleet::service` (requests and answers) in either mode: in this
//! process its key is a file and nobody can check what signs with it; in an image
//! (`--in-image`) its key is drawn and claimed in the image's attested evidence, and this
//! process only relays between etcd and the image's Fleet stream (`omega run
//! --fleet-connect`). See `omega_fleet_host::coordinator`.
//!
//! An owner-rooted fleet (nodes' bundles name `fleet.owner`): the owner runs `endorse` on
//! the coordinator's `coordinator` evidence (for the owner's nonce, under the SNP roots,
//! the launch digest of IMG), which signs an endorsement of the claimed key and boot; the
//! coordinator (`--endorsement FILE`, polled up to 120 s) hands it to the image, and node
//! agents started with `--owner` check placements and credentials under it
//! (`omega_fleet_host::endorse`, `omega_fleet::endorsement`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use omega_fleet::signed::SigningKey;
use omega_fleet_host::attest::{SnpRoots, omega_node};
use omega_fleet_host::audit::Audit;
use omega_fleet_host::backend::trusted_roots;
use omega_fleet_host::relay::InImageConfig;
use omega_fleet_host::source::PolicySource;
use omega_fleet_host::store::{Desired, Store, Submission, TeeSubmission};
use omega_fleet_host::{coordinator, node, parse_key, random32, read_key, scheduler};

#[derive(Parser)]
#[command(
    name = "omega-fleet",
    about = "Omega fleet: coordinator (in this process, or in an Omega image through a relay), scheduler on etcd, node agent"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// A host's SEV-SNP chip, as its VCEK names it.
#[derive(clap::Args, Clone)]
struct Chip {
    /// The chip's VCEK (DER, from AMD's KDS).
    #[arg(long, value_name = "FILE", requires = "family")]
    vcek: Option<PathBuf>,
    /// The processor family of --vcek: milan, genoa or turin.
    #[arg(long, value_name = "FAMILY", requires = "vcek")]
    family: Option<String>,
}

impl Chip {
    /// Both flags or neither (clap requires it).
    fn chain(&self) -> anyhow::Result<Option<omega_fleet_host::store::AmdChain>> {
        Ok(match (&self.vcek, &self.family) {
            (Some(v), Some(f)) => Some(omega_fleet_host::store::AmdChain::read(v, f)?),
            _ => None,
        })
    }
}

#[derive(clap::Args, Clone)]
struct Etcd {
    /// etcd endpoint(s), e.g. http://127.0.0.1:2379.
    #[arg(long = "etcd", required = true)]
    etcd: Vec<String>,
    /// The fleet's name (its key prefix in etcd).
    #[arg(long)]
    fleet: String,
    /// Seconds between polls of etcd (fractions allowed).
    #[arg(long, default_value = "0.2")]
    poll: f64,
}

impl Etcd {
    fn poll(&self) -> Duration {
        Duration::from_secs_f64(self.poll.clamp(0.01, 60.0))
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Writes a fresh Ed25519 seed (64 hex digits, mode 0600) and prints its public key.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Compiles a JSON policy source to its canonical form and signs it with the owner key.
    Policy {
        #[arg(long)]
        source: PathBuf,
        #[arg(long)]
        owner_key: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// AWS's Nitro Enclaves root certificate (PEM, as AWS publishes it), put into the
        /// signed policy (DER): the coordinator verifies Nitro guests' attestation documents
        /// under it. Without it the policy admits no Nitro guest.
        #[arg(long, value_name = "PEM")]
        nitro_root: Option<PathBuf>,
    },
    /// The coordinator: reads proposals and evidence from etcd, has the coordinator sign
    /// placements and admit nodes, writes placements, credentials, statuses and boots back.
    ///
    /// Two modes, one protocol (`omega_fleet::service` requests and answers):
    ///
    /// * default (the host STAND-IN): the coordinator runs in this process, signing with
    ///   the key seed in --key, keeping the highest applied policy version in --state.
    ///   Nobody can check what signs with that key.
    ///
    /// * --in-image: the coordinator runs in an attested Omega image, started here as
    ///   `omega run --image IMG --bundle DIR --log-dir RUN_DIR/log --fleet-connect ADDR`
    ///   (--simulated-psp with --lab-root); the bundle's manifest names `coordinator` (owner,
    ///   policy floor). Its key is drawn inside the image and claimed in its evidence
    ///   (RUN_DIR/log/evidence/coordinator.bin); this process only relays, writes the key it
    ///   reads there to RUN_DIR/coordinator.pub and logs it, but that is the host's read:
    ///   clients verify the evidence themselves (`measurements verify-evidence --principal
    ///   coordinator`).
    ///
    /// In both, the first request is the owner-signed --policy (a refusal stops the start),
    /// placements carry the bundle's files (hashed by the coordinator), Nitro guests'
    /// documents are verified by the coordinator under the policy's Nitro root (`omega-fleet
    /// policy --nitro-root`), and the coordinator's time is anchored by the policy's
    /// `issued_at`, not this host's clock.
    Coordinator {
        #[command(flatten)]
        etcd: Etcd,
        /// The coordinator's key seed file (the in-process coordinator's key).
        #[arg(
            long,
            required_unless_present = "in_image",
            conflicts_with = "in_image"
        )]
        key: Option<PathBuf>,
        /// The policy owner's public key (64 hex digits). With --in-image, the owner the
        /// image must claim.
        #[arg(long)]
        owner: String,
        /// The owner-signed policy, sent to the coordinator first.
        #[arg(long)]
        policy: PathBuf,
        /// File keeping the highest policy version applied (replays refused across
        /// restarts); in-process coordinator only.
        #[arg(
            long,
            required_unless_present = "in_image",
            conflicts_with = "in_image"
        )]
        state: Option<PathBuf>,
        /// Apply no policy below this version (in-process coordinator; an image's floor is
        /// its bundle manifest's `coordinator.min_policy_version`).
        #[arg(
            long,
            value_name = "N",
            default_value_t = 0,
            conflicts_with = "in_image"
        )]
        min_policy_version: u64,
        /// Also trust the simulated PSP's lab root (tests only) for nodes that submit no AMD
        /// chain (`omega-fleet node` without --vcek); with --in-image, the image boots with
        /// `--simulated-psp`. Without it only nodes on real SEV-SNP hosts, whose submissions
        /// carry their VCEK, are admitted.
        #[arg(long)]
        lab_root: bool,
        /// Append each event here as a JSON line (also printed on stderr).
        #[arg(long)]
        audit: Option<PathBuf>,
        /// Run the coordinator in an Omega image (with --omega, --image,
        /// --coordinator-bundle, --run-dir) and relay to it.
        #[arg(long, requires_all = ["omega", "image", "coordinator_bundle", "run_dir"])]
        in_image: bool,
        /// The `omega` launcher (--in-image).
        #[arg(long, value_name = "BIN", requires = "in_image")]
        omega: Option<PathBuf>,
        /// The Omega image to boot (--in-image).
        #[arg(long, value_name = "IMG", requires = "in_image")]
        image: Option<PathBuf>,
        /// The coordinator bundle: its manifest names `coordinator` with the owner and the
        /// policy floor (--in-image).
        #[arg(long, value_name = "DIR", requires = "in_image")]
        coordinator_bundle: Option<PathBuf>,
        /// Directory for this run: log/ (the launcher's --log-dir, with the evidence),
        /// omega-run.stdout and .stderr, coordinator.pub (--in-image).
        #[arg(long, value_name = "DIR", requires = "in_image")]
        run_dir: Option<PathBuf>,
        /// The owner's endorsement of this coordinator (`omega-fleet endorse --out`): once
        /// the policy is applied, polled until it exists (up to 120 s after the start), then
        /// sent to the coordinator (logged `endorsed`, or `endorsement-refused`, not fatal).
        #[arg(long, value_name = "FILE")]
        endorsement: Option<PathBuf>,
    },
    /// The fleet owner endorses a coordinator boot: verifies its `coordinator` evidence (as
    /// `measurements verify-evidence --principal coordinator` does: the evidence tree for
    /// --nonce, its SNP report under the roots with REPORT_DATA and the launch digest of
    /// --image for the shape), requires the claimed owner to be --owner-key's, and signs an
    /// endorsement of the claimed key and boot id for --fleet, valid --lifetime seconds from
    /// now. Prints the endorsed key.
    Endorse {
        /// The coordinator's evidence (its run's `log/evidence/coordinator.bin`).
        #[arg(long, value_name = "FILE")]
        evidence: PathBuf,
        /// The nonce the coordinator's evidence must answer (64 hex digits; the coordinator
        /// launch's `--nonce`).
        #[arg(long, value_name = "HEX")]
        nonce: String,
        /// The coordinator's Omega image (its launch digest is the expected measurement).
        #[arg(long, value_name = "IMG")]
        image: PathBuf,
        #[arg(long, default_value_t = 1)]
        vcpus: u32,
        /// QEMU vCPU model of the launch (as `measurements digest --vcpu-type`).
        #[arg(long, value_name = "TYPE", default_value = "EPYC-v4")]
        vcpu_type: String,
        /// Verify the report under the simulated PSP's lab root (tests only).
        #[arg(long, required_unless_present = "vcek", conflicts_with = "vcek")]
        lab_root: bool,
        /// The coordinator host's chip: verify the report under AMD's roots of --family.
        #[command(flatten)]
        chip: Chip,
        /// The owner's key seed file.
        #[arg(long, value_name = "FILE")]
        owner_key: PathBuf,
        /// The fleet the endorsement is for.
        #[arg(long)]
        fleet: String,
        /// Seconds the endorsement is valid from now (more than 0).
        #[arg(long, value_name = "SECONDS")]
        lifetime: u64,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Submits a TDX or Nitro guest's evidence for its placement (what an Omega node's
    /// agent does with the monitor's evidence): the guest's bound data (TDX REPORTDATA, Nitro
    /// `user_data`) must be `omega_fleet::admission::direct_binding(key, the placement's
    /// nonce)`, SHA-512 over a tag, the key and the nonce.
    SubmitTee {
        #[command(flatten)]
        etcd: Etcd,
        #[arg(long)]
        workload: String,
        /// The node the placement names.
        #[arg(long)]
        node: String,
        /// The coordinator's public key (64 hex digits): the placement must verify under it.
        #[arg(long, value_name = "HEX")]
        coordinator: String,
        /// The guest's Ed25519 public key (64 hex digits) its evidence binds.
        #[arg(long, value_name = "HEX")]
        node_key: String,
        /// A TDX quote (with --collateral).
        #[arg(
            long,
            value_name = "FILE",
            requires = "collateral",
            conflicts_with = "nitro"
        )]
        tdx: Option<PathBuf>,
        /// The quote's PCS collateral (JSON).
        #[arg(long, value_name = "FILE")]
        collateral: Option<PathBuf>,
        /// An AWS Nitro attestation document (COSE_Sign1).
        #[arg(long, value_name = "FILE", required_unless_present = "tdx")]
        nitro: Option<PathBuf>,
    },
    /// The untrusted scheduler.
    Scheduler {
        #[command(flatten)]
        etcd: Etcd,
        #[arg(long)]
        audit: Option<PathBuf>,
    },
    /// The node agent: boots coordinator-signed placements with `omega run` (under the
    /// simulated PSP, or `--sev-snp` with --vcek).
    Node {
        #[command(flatten)]
        etcd: Etcd,
        #[arg(long)]
        id: String,
        /// The coordinator's public key (64 hex digits), when the bundles name it.
        #[arg(
            long,
            value_name = "HEX",
            required_unless_present = "owner",
            conflicts_with = "owner"
        )]
        coordinator: Option<String>,
        /// The fleet owner's public key (64 hex digits), when the bundles name the owner:
        /// placements must verify under the owner-endorsed coordinator key the coordinator
        /// published, credentials are checked as presented under the owner.
        #[arg(long, value_name = "HEX")]
        owner: Option<String>,
        #[arg(long)]
        omega: PathBuf,
        #[arg(long)]
        image: PathBuf,
        #[arg(long, default_value_t = 1)]
        vcpus: u32,
        #[arg(long)]
        work: PathBuf,
        /// Lease TTL in seconds: the node counts as dead this long after it stops.
        #[arg(long, default_value_t = 3)]
        ttl: i64,
        #[arg(long)]
        audit: Option<PathBuf>,
        /// This host's SEV-SNP chip: boots launch with `--sev-snp` and their reports are
        /// checked under AMD's roots of --family; without it, under the simulated PSP (tests).
        #[command(flatten)]
        chip: Chip,
    },
    /// Declares a desired workload (operator).
    Submit {
        #[command(flatten)]
        etcd: Etcd,
        #[arg(long)]
        workload: String,
        #[arg(long)]
        bundle: PathBuf,
        #[arg(long)]
        role: String,
        /// The workload this one opens a peer channel with (declare both, each naming
        /// the other); the bundles' manifests name the fleet and the coordinator key.
        #[arg(long, value_name = "WORKLOAD")]
        peer: Option<String>,
    },
    /// Admission latency: evidence verification + credential, N times, on one stored run's
    /// `platform` and `bundle` evidence (lab root) and its nonce.
    BenchAdmission {
        /// An `omega run --log-dir` of a `--simulated-psp` run: its `evidence/platform.bin`,
        /// `evidence/bundle.bin` and `nonce.hex` are used.
        #[arg(long)]
        log_dir: PathBuf,
        #[arg(long, default_value_t = 100)]
        iterations: u32,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Keygen { out } => {
            let seed = random32()?;
            let key = SigningKey::from_seed(seed).context("RNG gave zeros")?;
            write_private(&out, &format!("{}\n", hex::encode(seed)))?;
            println!("{}", hex::encode(key.public()));
            Ok(())
        }
        Cmd::Policy {
            source,
            owner_key,
            out,
            nitro_root,
        } => {
            let text = std::fs::read_to_string(&source)
                .with_context(|| format!("reading {}", source.display()))?;
            let src: PolicySource =
                serde_json::from_str(&text).with_context(|| format!("{}", source.display()))?;
            let mut policy = src.compile()?;
            if let Some(p) = &nitro_root {
                let pem = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                policy.nitro_root = measurements::tee::nitro_root_der(&pem)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
                policy.validate()?;
            }
            let owner = SigningKey::from_seed(read_key(&owner_key)?).context("zero owner seed")?;
            std::fs::write(&out, policy.sign(&owner)?)
                .with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "policy {} version {} signed by {}{}",
                policy.fleet_id,
                policy.version,
                hex::encode(owner.public()),
                if policy.nitro_root.is_empty() {
                    ", no Nitro root"
                } else {
                    ", with the Nitro root"
                }
            );
            Ok(())
        }
        Cmd::Coordinator {
            etcd,
            key,
            owner,
            policy,
            state,
            min_policy_version,
            lab_root,
            audit,
            in_image,
            omega,
            image,
            coordinator_bundle,
            run_dir,
            endorsement,
        } => {
            let mode = match (
                in_image,
                omega,
                image,
                coordinator_bundle,
                run_dir,
                key,
                state,
            ) {
                (true, Some(omega), Some(image), Some(bundle), Some(run_dir), None, None) => {
                    coordinator::Mode::InImage(InImageConfig {
                        omega,
                        image,
                        bundle,
                        run_dir,
                        simulated_psp: lab_root,
                    })
                }
                (false, None, None, None, None, Some(key), Some(state)) => {
                    coordinator::Mode::Local {
                        key_seed: read_key(&key)?,
                        state,
                        min_policy_version,
                    }
                }
                _ => bail!(
                    "give --key and --state, or --in-image with --omega, --image, --coordinator-bundle and --run-dir"
                ),
            };
            let cfg = coordinator::Config {
                etcd: etcd.etcd.clone(),
                fleet: etcd.fleet.clone(),
                owner: parse_key(&owner)?,
                policy,
                lab_root,
                audit,
                poll: etcd.poll(),
                mode,
                endorsement,
            };
            runtime()?.block_on(coordinator::run(cfg))
        }
        Cmd::Endorse {
            evidence,
            nonce,
            image,
            vcpus,
            vcpu_type,
            lab_root: _,
            chip,
            owner_key,
            fleet,
            lifetime,
            out,
        } => {
            let roots = match chip.chain()? {
                Some(a) => SnpRoots::Amd {
                    family: a.family.parse().map_err(|e: String| anyhow::anyhow!(e))?,
                    vcek: hex::decode(&a.vcek)?,
                },
                None => SnpRoots::Lab,
            };
            if lifetime == 0 {
                bail!("--lifetime 0 endorses nothing");
            }
            if !omega_fleet::name_ok(&fleet) {
                bail!("--fleet {fleet:?}: 1..=64 of [A-Za-z0-9._-]");
            }
            let owner = SigningKey::from_seed(read_key(&owner_key)?).context("zero owner seed")?;
            let nonce = parse_key(&nonce).context("--nonce")?;
            let vcpu_type: measurements::VcpuType = vcpu_type
                .parse()
                .map_err(|e| anyhow::anyhow!("--vcpu-type {vcpu_type}: {e}"))?;
            let bytes = std::fs::read(&evidence)
                .with_context(|| format!("reading {}", evidence.display()))?;
            let claim =
                omega_fleet_host::endorse::verify_coordinator(&bytes, &nonce, &roots, || {
                    let img = std::fs::read(&image)
                        .with_context(|| format!("reading {}", image.display()))?;
                    measurements::Measurer::new(&img)
                        .and_then(|m| m.launch_digest(vcpus, vcpu_type, 0x1, &Default::default()))
                        .with_context(|| format!("{}", image.display()))
                })
                .with_context(|| format!("{}", evidence.display()))?;
            let signed = omega_fleet_host::endorse::endorse(
                &owner,
                &fleet,
                &claim,
                omega_fleet_host::now(),
                lifetime,
            )?;
            std::fs::write(&out, signed).with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "endorsed coordinator boot {} of fleet {fleet} for {lifetime} s",
                hex::encode(claim.boot_id)
            );
            println!("{}", hex::encode(claim.public));
            Ok(())
        }
        Cmd::SubmitTee {
            etcd,
            workload,
            node,
            coordinator,
            node_key,
            tdx,
            collateral,
            nitro,
        } => {
            let mut store = Store::new(&etcd.etcd, &etcd.fleet);
            let rt = runtime()?;
            let signed = rt
                .block_on(store.get("placements", &workload))?
                .with_context(|| format!("no placement for {workload}"))?;
            let p = omega_fleet::Placement::verify(&signed, &parse_key(&coordinator)?)?;
            if p.node_id != node {
                bail!(
                    "the placement of {workload} names node {}, not {node}",
                    p.node_id
                );
            }
            parse_key(&node_key)?;
            let read = |f: &PathBuf| std::fs::read(f).with_context(|| format!("{}", f.display()));
            let tee = match (&tdx, &collateral, &nitro) {
                (Some(q), Some(c), None) => TeeSubmission {
                    kind: "tdx".into(),
                    evidence: hex::encode(read(q)?),
                    collateral: hex::encode(read(c)?),
                    node_key,
                },
                (None, None, Some(d)) => TeeSubmission {
                    kind: "nitro".into(),
                    evidence: hex::encode(read(d)?),
                    collateral: String::new(),
                    node_key,
                },
                _ => bail!("give --tdx QUOTE --collateral JSON, or --nitro DOC"),
            };
            let sub = Submission {
                node,
                nonce: hex::encode(p.nonce),
                evidence: String::new(),
                bundle_evidence: String::new(),
                peer_evidence: String::new(),
                tee: Some(tee),
                amd: None,
            };
            rt.block_on(store.put_json("evidence", &workload, &sub))?;
            println!("submitted for nonce {}", hex::encode(p.nonce));
            Ok(())
        }
        Cmd::Scheduler { etcd, audit } => {
            let store = Store::new(&etcd.etcd, &etcd.fleet);
            let audit = Audit::new("scheduler", audit)?;
            runtime()?.block_on(scheduler::run(store, audit, etcd.poll()))
        }
        Cmd::Node {
            etcd,
            id,
            coordinator,
            owner,
            omega,
            image,
            vcpus,
            work,
            ttl,
            audit,
            chip,
        } => {
            let amd = chip.chain()?;
            let root = match (coordinator, owner) {
                (Some(c), None) => omega_fleet::endorsement::Root::Coordinator(parse_key(&c)?),
                (None, Some(o)) => omega_fleet::endorsement::Root::Owner(parse_key(&o)?),
                _ => bail!("give exactly one of --coordinator and --owner"),
            };
            if !omega_fleet::name_ok(&id) {
                bail!("--id {id:?}: 1..=64 of [A-Za-z0-9._-]");
            }
            std::fs::create_dir_all(&work)?;
            let cfg = node::Config {
                etcd: etcd.etcd.clone(),
                fleet: etcd.fleet.clone(),
                id,
                root,
                omega,
                image,
                vcpus,
                work,
                audit,
                ttl: ttl.clamp(1, 3600),
                poll: etcd.poll(),
                amd,
            };
            runtime()?.block_on(node::run(cfg))
        }
        Cmd::Submit {
            etcd,
            workload,
            bundle,
            role,
            peer,
        } => {
            let mut store = Store::new(&etcd.etcd, &etcd.fleet);
            let d = Desired {
                bundle: bundle
                    .canonicalize()
                    .with_context(|| format!("{}", bundle.display()))?
                    .display()
                    .to_string(),
                role,
                peer,
            };
            runtime()?.block_on(store.put_json("desired", &workload, &d))
        }
        Cmd::BenchAdmission {
            log_dir,
            iterations,
        } => {
            let nonce = std::fs::read_to_string(log_dir.join("nonce.hex"))
                .with_context(|| format!("{}/nonce.hex", log_dir.display()))?;
            bench(&log_dir, nonce.trim(), iterations)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Per iteration: a fresh in-process coordinator service (`omega_fleet::service::Service`,
/// lab roots) applies a policy and issues the challenge for the run's nonce (not timed), then
/// the timed part: one `Admit` request handled as the coordinator handles it (strict decode,
/// the `platform` and `bundle` evidence verified: trees, REPORT_DATA, lab chain, report
/// signature; the no_std admission check and the credential signature).
fn bench(log_dir: &std::path::Path, nonce: &str, iterations: u32) -> anyhow::Result<()> {
    use omega_fleet::policy::{FleetPolicy, ImageRule, POLICY_FORMAT, Shape, SnpTcb};
    use omega_fleet::service::{Chain, Request, Response, Service, encode};
    let read = |name: &str| {
        let p = log_dir.join("evidence").join(name);
        std::fs::read(&p).with_context(|| format!("{}", p.display()))
    };
    let (platform, bundle) = (read("platform.bin")?, read("bundle.bin")?);
    let nonce = parse_key(nonce)?;
    let probe = omega_node(&platform, &bundle, &nonce, &SnpRoots::Lab)?;
    let digest = probe.bundle.context("no bundle claim")?;
    let owner = SigningKey::from_seed([1; 32]).context("seed")?;
    let policy = FleetPolicy {
        format: POLICY_FORMAT,
        fleet_id: "bench".into(),
        version: 1,
        issued_at: omega_fleet_host::now(),
        allow_simulated: true,
        images: vec![ImageRule {
            tee: probe.tee,
            measurement: probe.measurement.clone(),
            name: "bench".into(),
            shape: Shape {
                vcpus: 1,
                vcpu_type: "EPYC-v4".into(),
                memory_mib: 128,
            },
            roles: vec!["worker".into()],
        }],
        min_snp_tcb: SnpTcb::default(),
        allow_tdx_out_of_date: false,
        agents: vec![],
        routes: vec![],
        credential_lifetime_s: 600,
        challenge_lifetime_s: 600,
        nitro_root: Vec::new(),
    }
    .sign(&owner)?;
    let admit = encode(&Request::Admit {
        id: 2,
        nonce,
        chain: Chain::Lab,
        platform,
        bundle,
        peer: Vec::new(),
    });
    let mut times = Vec::new();
    for _ in 0..iterations.max(1) {
        let mut s = Service::new(
            SigningKey::from_seed(random32()?).context("seed")?,
            owner.public(),
            0,
            trusted_roots(true),
        );
        let applied = s.handle(
            &encode(&Request::Policy {
                id: 1,
                signed: policy.clone(),
            }),
            0,
            random32()?,
        );
        if !matches!(applied.response, Response::PolicyApplied { .. }) {
            bail!("bench policy: {:?}", applied.response);
        }
        let now = s.now(0).context("no time anchor")?;
        s.core_mut()
            .place("bench", "node", "worker", digest, &[], nonce, now)?;
        let t = Instant::now();
        let h = s.handle(&admit, 0, random32()?);
        times.push(t.elapsed());
        if !matches!(h.response, Response::Admitted { .. }) {
            bail!("not admitted: {:?}", h.response);
        }
        std::hint::black_box(h);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |p: usize| times[(times.len() - 1) * p / 100];
    println!(
        "admission (evidence verification + credential), {} runs: median {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        times.len(),
        ms(pct(50)),
        ms(pct(90)),
        ms(pct(100))
    );
    Ok(())
}
