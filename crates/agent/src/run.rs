//! The agent's runtime: load, wire source -> transforms -> sinks, run until told to stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nightjar_core::pipeline::{Pipeline, Transform};
use nightjar_core::telemetry::Telemetry;
use nightjar_core::time::BootClock;
use nightjar_core::Event;
use nightjar_enrich::{Enricher, EnricherConfig};
use nightjar_export::JsonLinesSink;
use nightjar_loader::convert::Converter;
use nightjar_loader::KernelProbes;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::cli::OutputFormat;
use crate::config::AgentConfig;

/// Batches waiting between the ring-buffer drain and the pipeline.
const QUEUE_BATCHES: usize = 64;

/// How often kernel loss counters and cache sizes are published.
const TELEMETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Enrichment as a pipeline stage.
struct EnrichTransform {
    enricher: Enricher,
    started: Instant,
    /// `started.elapsed()` at the start of the batch: one clock read per batch, not per event
    /// (a batch spans at most one drain pass; the caches count exits in seconds).
    batch_started: Duration,
    telemetry: Arc<Telemetry>,
}

impl Transform for EnrichTransform {
    fn name(&self) -> &'static str {
        "enrich"
    }

    fn begin_batch(&mut self) {
        self.batch_started = self.started.elapsed();
    }

    fn apply(&mut self, event: &mut Event) -> bool {
        self.enricher.enrich(event, self.batch_started);
        true
    }

    fn end_batch(&mut self) {
        self.enricher.processes_mut().reap(self.started.elapsed());
        let processes = self.enricher.processes().len();
        let cgroups = self.enricher.cgroups().map_or(0, |c| c.stats().cached);
        self.telemetry.process_cache_size.set(processes as i64);
        self.telemetry.cgroup_cache_size.set(cgroups as i64);
    }
}

fn node_name() -> Arc<str> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| Arc::from(s.trim()))
        .unwrap_or_else(|_| Arc::from("unknown"))
}

/// Runs the agent until SIGINT/SIGTERM (or the configured duration), then detaches.
pub async fn run_agent(config: AgentConfig) -> Result<()> {
    run_agent_with(config, RunHooks::default()).await
}

/// Extra wiring for embedders such as the demo: a readiness signal, an external stop, and
/// a cgroup filter on the output.
#[derive(Debug, Default)]
pub struct RunHooks {
    pub ready: Option<tokio::sync::oneshot::Sender<()>>,
    pub stop: Option<tokio::sync::oneshot::Receiver<()>>,
    pub cgroup_ids: Vec<u64>,
}

pub async fn run_agent_with(config: AgentConfig, mut hooks: RunHooks) -> Result<()> {
    // Before anything slow: a signal that arrives while the programs load is kept and acted
    // on once they are up. Registered later, a SIGINT sent to an agent started in the
    // background of a script (which inherits SIGINT ignored) during start-up was lost for good.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let telemetry = Arc::new(Telemetry::new());
    let filter = config
        .filter
        .clone()
        .with_cgroup_ids(hooks.cgroup_ids.iter().copied());
    let mut pipeline = Pipeline::new(telemetry.clone());
    match config.output {
        OutputFormat::Json => {
            let sink = match &config.output_file {
                Some(path) => JsonLinesSink::file(path)
                    .with_context(|| format!("opening {}", path.display()))?,
                None => JsonLinesSink::stdout(),
            };
            pipeline = pipeline.sink(filter, Box::new(sink));
        }
        OutputFormat::None => {}
    }

    let mut probes = KernelProbes::load(&config.probes)?;
    telemetry
        .ringbuf_bytes
        .set(i64::from(config.probes.ringbuf_bytes));
    for failure in probes.failures() {
        tracing::warn!(program = %failure.program, hook = %failure.hook, error = %failure.error, "Hook unavailable");
    }
    let ring = probes.take_ring_buffer()?;
    let mut counters = probes.take_counters()?;
    let clock = BootClock::now();
    let node = node_name();
    attach_cgroup_hooks(&mut probes, &config)?;
    let (xdp_counters, blocklist) = if config.xdp_interfaces.is_empty() {
        (None, None)
    } else {
        let (counters, blocklist) = probes.attach_xdp(&config.xdp_interfaces, &config.blocklist)?;
        tracing::info!(interfaces = ?config.xdp_interfaces, entries = config.blocklist.len(), "XDP attached");
        (
            Some(Arc::new(std::sync::Mutex::new(counters))),
            Some(Arc::new(std::sync::Mutex::new(blocklist))),
        )
    };
    let flow_table = if config.tc_interfaces.is_empty() && !config.tc_veths {
        None
    } else {
        let names = probes.attach_tc(&config.tc_interfaces)?;
        tracing::info!(interfaces = ?config.tc_interfaces, "TC flow accounting attached");
        Some(probes.take_flow_table(names, config.flow_timers, clock, node.clone())?)
    };

    telemetry
        .programs_attached
        .set(probes.programs_loaded() as i64);
    telemetry
        .kernel_reads
        .get_or_create(&nightjar_core::telemetry::ModeLabel {
            mode: probes.kernel_reads().name(),
        })
        .set(1);

    // Seed after attaching: a process is either in /proc now or its exec comes as an event.
    let started = Instant::now();
    let mut enrich_config = EnricherConfig::default();
    // Walk on the first miss of every new cgroup id: a short-lived process in a new cgroup
    // is gone before /proc can tell us its path. The negative cache keeps repeats free.
    enrich_config.cgroups.rescan_interval = Duration::ZERO;
    let mut enricher = Enricher::from_system(enrich_config).context("setting up enrichment")?;
    let seeded = enricher
        .seed_from_procfs(std::path::Path::new("/proc"))
        .context("reading /proc")?;
    tracing::info!(processes = seeded, "Process cache seeded from /proc");
    // Flows first get the owner of their socket, then enrichment names it. Without TC there
    // are no flow records, and learning every socket's 5-tuple would only cost CPU (a fifth of
    // the agent's under a connect storm).
    if flow_table.is_some() {
        pipeline = pipeline.transform(Box::new(
            nightjar_enrich::FlowAttribution::new(Default::default())
                .with_telemetry(telemetry.clone()),
        ));
    }
    pipeline = pipeline.transform(Box::new(EnrichTransform {
        enricher,
        started,
        batch_started: started.elapsed(),
        telemetry: telemetry.clone(),
    }));
    let mut kube_pods = None;
    let kube_sources = if !config.kube_objects.is_empty()
        || config.kube_api.is_some()
        || config.cri_socket.is_some()
    {
        let (annotator, sources) = kubernetes(&config, telemetry.clone()).await;
        kube_pods = Some(annotator.published());
        spawn_resource_sampler(&config, annotator.store().clone(), telemetry.clone());
        pipeline = pipeline.transform(Box::new(annotator));
        pipeline = pipeline.transform(Box::new(nightjar_k8s::rollup::KubeRollup::new(
            telemetry.clone(),
            config.pod_metrics,
        )));
        sources
    } else {
        KubeSources::default()
    };
    let rates: nightjar_core::rates::SharedRates = Arc::default();
    pipeline = pipeline.transform(Box::new(
        nightjar_core::network_metrics::NetworkMetrics::new(telemetry.clone())
            .with_rates(rates.clone()),
    ));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    if let Some(addr) = config.metrics_addr {
        let (bound, _server) =
            nightjar_export::prometheus::serve(addr, telemetry.clone(), shutdown_rx.clone())
                .await
                .with_context(|| format!("binding the metrics endpoint {addr}"))?;
        tracing::info!(%bound, "Serving /metrics");
    }

    let _control = match &config.control_socket {
        Some(path) => {
            let state = crate::control::ControlState {
                blocklist: blocklist.clone(),
                xdp: xdp_counters.clone(),
                pods: kube_pods.clone(),
                telemetry: telemetry.clone(),
            };
            // Without it the agent still observes and enforces what it was started with.
            match crate::control::serve(path, state, shutdown_rx.clone()) {
                Ok(socket) => {
                    tracing::info!(socket = %path.display(), "Control socket open");
                    Some(socket)
                }
                Err(err) => {
                    tracing::warn!(
                        error = format!("{err:#}"),
                        "No control socket: runtime changes are off"
                    );
                    None
                }
            }
        }
        None => None,
    };

    let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
    let flows = flow_table.map(|table| {
        tokio::spawn(poll_flows(
            table,
            tx.clone(),
            telemetry.clone(),
            shutdown_rx.clone(),
        ))
    });
    if let Some(interval) = config.rates_interval {
        tokio::spawn(emit_rates(
            rates,
            interval,
            clock,
            node.clone(),
            tx.clone(),
            shutdown_rx.clone(),
        ));
    }
    let converter = Converter::new(clock, node, config.probes.agent_tgid);
    let drain = tokio::spawn(nightjar_loader::ringbuf::drain(
        ring,
        converter,
        tx,
        telemetry.clone(),
        shutdown_rx.clone(),
    ));
    let pipeline_task = tokio::spawn(pipeline.run(rx));
    let watchdog = crate::sched::Watchdog::start(config.cpu_priority, telemetry.clone());
    tracing::info!(
        programs = probes.attached().len(),
        unavailable = probes.failures().len(),
        kernel_reads = probes.kernel_reads().name(),
        "Nightjar agent ready"
    );

    if let Some(ready) = hooks.ready.take() {
        let _ = ready.send(());
    }
    // With --tc-veths, follow links as they come and go (the dump of existing links first).
    let (link_tx, mut link_rx) = mpsc::channel(16);
    if config.tc_veths {
        let mut watcher =
            nightjar_loader::links::LinkWatcher::open().context("opening rtnetlink")?;
        tokio::spawn(async move {
            while let Ok(changes) = watcher.next().await {
                if link_tx.send(changes).await.is_err() {
                    return;
                }
            }
        });
    }
    let mut veths = std::collections::HashSet::new();
    let mut stop = hooks.stop.take();
    let deadline = config.duration.map(|d| tokio::time::Instant::now() + d);
    let mut tick = tokio::time::interval(TELEMETRY_INTERVAL);
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if deadline.is_some() => break,
            _ = async { stop.as_mut().expect("guarded by is_some").await }, if stop.is_some() => break,
            Some(changes) = link_rx.recv() => {
                for change in changes {
                    follow_link(&mut probes, &mut veths, change);
                }
            }
            _ = tick.tick() => {
                kube_sources.report(&telemetry);
                // TC programs load with the first veth that appears.
                telemetry.programs_attached.set(probes.programs_loaded() as i64);
                counters.report(&telemetry);
                if let Some(xdp) = &xdp_counters {
                    xdp.lock().unwrap_or_else(|e| e.into_inner()).report(&telemetry);
                }
                if let Some(list) = &blocklist {
                    list.lock().unwrap_or_else(|e| e.into_inner()).report(&telemetry);
                }
            }
        }
    }

    tracing::info!("Stopping: detaching programs");
    // What is left to drain is drained at normal priority.
    watchdog.stop();
    // Detach first so no new events arrive, then deliver what the ring buffer still holds.
    drop(probes);
    let _ = shutdown_tx.send(true);
    drain.await.context("ring-buffer drain task")??;
    if let Some(flows) = flows {
        flows.await.context("flow poller task")?;
    }
    pipeline_task.await.context("pipeline task")?;
    counters.report(&telemetry);
    if let Some(list) = &blocklist {
        list.lock()
            .unwrap_or_else(|e| e.into_inner())
            .report(&telemetry);
    }
    tracing::info!("Nightjar agent stopped");
    Ok(())
}

/// How the metadata sources are doing, for the agent's status metrics.
#[derive(Debug, Default)]
struct KubeSources {
    api: Option<Arc<nightjar_k8s::watch::ApiStatus>>,
    runtime: Option<Arc<nightjar_k8s::cri::RuntimeStatus>>,
}

impl KubeSources {
    fn report(&self, telemetry: &Telemetry) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(api) = &self.api {
            telemetry
                .kubernetes_api_up
                .set(i64::from(api.up.load(Relaxed)));
        }
        if let Some(runtime) = &self.runtime {
            telemetry
                .container_runtime_up
                .set(i64::from(runtime.up.load(Relaxed)));
        }
    }
}

/// The Kubernetes transform over one index, fed by the metadata file and, when configured,
/// the API watchers. An API that cannot be reached leaves the agent running, degraded.
async fn kubernetes(
    config: &AgentConfig,
    telemetry: Arc<Telemetry>,
) -> (nightjar_k8s::KubeAnnotator, KubeSources) {
    let mut store = nightjar_k8s::ClusterStore::new();
    for object in config.kube_objects.iter().cloned() {
        store.apply(nightjar_k8s::Change::Applied(object));
    }
    if !config.kube_objects.is_empty() {
        let stats = store.stats();
        tracing::info!(
            pods = stats.pods,
            services = stats.services,
            "Kubernetes metadata file loaded"
        );
    }
    let shared: nightjar_k8s::SharedStore = Arc::new(std::sync::RwLock::new(store));
    let mut status = None;
    if let Some(api) = &config.kube_api {
        match nightjar_k8s::watch::client(api.kubeconfig.as_deref()).await {
            Ok(client) => {
                let api_status = Arc::new(nightjar_k8s::watch::ApiStatus::default());
                // The tasks end with the runtime when the agent stops.
                let _tasks = nightjar_k8s::watch::spawn_watchers(
                    client,
                    Some(&api.node_name),
                    shared.clone(),
                    api_status.clone(),
                );
                tracing::info!(node = %api.node_name, "Watching the Kubernetes API");
                status = Some(api_status);
            }
            Err(err) => {
                tracing::warn!(error = %err, "No Kubernetes API: events carry no pod context from it");
            }
        }
    }
    let mut annotator =
        nightjar_k8s::KubeAnnotator::shared(shared.clone()).with_telemetry(telemetry);
    let mut runtime = None;
    if let Some(socket) = &config.cri_socket {
        let runtime_status = Arc::new(nightjar_k8s::cri::RuntimeStatus::default());
        runtime = Some(runtime_status.clone());
        tokio::spawn(nightjar_k8s::cri::poll_runtime(
            socket.clone(),
            shared,
            Duration::from_secs(5),
            runtime_status,
        ));
        // A container's first events wait for the runtime to name its pod (bounded; a runtime
        // that fails is left alone for a while).
        annotator = annotator.with_runtime_lookup(nightjar_k8s::runtime_lookup::blocking(
            socket.clone(),
            Duration::from_millis(250),
        ));
        tracing::info!(socket = %socket.display(), "Asking the container runtime for pod metadata");
    }
    (
        annotator,
        KubeSources {
            api: status,
            runtime,
        },
    )
}

/// Reads this node's pods' CPU and memory from their cgroups every `resource_interval`.
fn spawn_resource_sampler(
    config: &AgentConfig,
    store: nightjar_k8s::SharedStore,
    telemetry: Arc<Telemetry>,
) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts = nightjar_k8s::resources::CgroupMounts::from_mountinfo(&mountinfo);
    let mut sampler =
        nightjar_k8s::resources::ResourceSampler::new(mounts, telemetry, config.pod_metrics);
    let interval = config.resource_interval;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            // The walk and reads are small file reads; off the async workers all the same.
            let store = store.clone();
            let result = tokio::task::spawn_blocking(move || {
                let guard = store.read().unwrap_or_else(|e| e.into_inner());
                let read = sampler.sample(&guard, interval);
                (sampler, read)
            })
            .await;
            match result {
                Ok((back, _)) => sampler = back,
                Err(_) => return,
            }
        }
    });
}

/// Connect rules and TCP lifecycle hook the cgroup v2 root. Without one the agent still runs,
/// without them, unless connect rules were asked for.
fn attach_cgroup_hooks(probes: &mut KernelProbes, config: &AgentConfig) -> Result<()> {
    let network = config
        .probes
        .groups
        .contains(&nightjar_loader::catalog::Group::Network);
    if !network && config.connect_rules.is_empty() {
        return Ok(());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let Some(root) = nightjar_enrich::mountinfo::find_cgroup2_mount(&mountinfo) else {
        anyhow::ensure!(
            config.connect_rules.is_empty(),
            "connect rules need the cgroup v2 root, and none is mounted"
        );
        tracing::warn!("No cgroup v2 mount: TCP lifecycle records are off");
        return Ok(());
    };
    probes.attach_cgroup_hooks(&config.connect_rules, &root)?;
    tracing::info!(rules = config.connect_rules.len(), cgroup = %root.display(), "Connect hooks and TCP lifecycle attached");
    Ok(())
}

/// Every `interval`, the network counts gathered per container become `network_rates`
/// events in the stream.
async fn emit_rates(
    rates: nightjar_core::rates::SharedRates,
    interval: Duration,
    clock: BootClock,
    node: Arc<str>,
    output: mpsc::Sender<nightjar_core::pipeline::Batch>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    let mut since = Instant::now();
    loop {
        // At shutdown the last, partial interval is reported too.
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = shutdown.changed() => true,
        };
        let elapsed = since.elapsed();
        since = Instant::now();
        let now = nightjar_core::time::boottime_ns();
        let batch: Vec<Event> = nightjar_core::rates::drain_rates(&rates, elapsed)
            .into_iter()
            .map(|r| {
                Event::unattributed(
                    clock.rfc3339(now),
                    now,
                    node.clone(),
                    nightjar_core::EventBody::NetworkRates(Box::new(r)),
                )
            })
            .collect();
        if (!batch.is_empty() && output.send(batch).await.is_err()) || stopping {
            return;
        }
    }
}

/// How often the kernel flow table is read.
const FLOW_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Reads the flow table every second; at shutdown reports every flow left.
async fn poll_flows(
    mut table: nightjar_loader::flows::FlowTable,
    output: mpsc::Sender<nightjar_core::pipeline::Batch>,
    telemetry: Arc<Telemetry>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(FLOW_POLL_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let batch = table.poll(nightjar_core::time::boottime_ns());
                let evicted = table.evicted();
                let counted = telemetry.flows_evicted.get();
                telemetry.flows_evicted.inc_by(evicted.saturating_sub(counted));
                telemetry.flow_table_entries.set(table.live() as i64);
                let created = table.created();
                let counted = telemetry.flows_created.get();
                telemetry.flows_created.inc_by(created.saturating_sub(counted));
                for (interface, direction, packets, bytes) in table.take_traffic() {
                    let label = nightjar_core::telemetry::InterfaceDirectionLabel { interface, direction };
                    telemetry.interface_packets.get_or_create(&label).inc_by(packets);
                    telemetry.interface_bytes.get_or_create(&label).inc_by(bytes);
                }
                if !batch.is_empty() && output.send(batch).await.is_err() {
                    return;
                }
            }
            _ = shutdown.changed() => {
                let batch = table.flush(nightjar_core::time::boottime_ns());
                if !batch.is_empty() {
                    let _ = output.send(batch).await;
                }
                return;
            }
        }
    }
}

/// Attaches TC accounting to a veth the first time it is seen; forgets it when it goes (its
/// links went with it).
fn follow_link(
    probes: &mut KernelProbes,
    veths: &mut std::collections::HashSet<u32>,
    change: nightjar_loader::links::LinkChange,
) {
    use nightjar_loader::links::LinkChange;
    match change {
        LinkChange::Up { index, name, kind } if kind.as_deref() == Some("veth") => {
            if veths.insert(index) {
                match probes.attach_tc_interface(&name) {
                    Ok(_) => tracing::info!(interface = %name, "TC flow accounting attached"),
                    Err(err) => {
                        veths.remove(&index);
                        tracing::warn!(interface = %name, error = %err, "TC attach failed");
                    }
                }
            }
        }
        LinkChange::Gone { index, .. } => {
            veths.remove(&index);
        }
        LinkChange::Up { .. } => {}
    }
}
