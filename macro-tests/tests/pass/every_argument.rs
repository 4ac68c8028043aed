mod my_plugins {
    #[derive(Default)]
    pub struct Metrics {
        pub prefix: String,
    }

    impl Metrics {
        pub fn prefix(self, prefix: &str) -> Self {
            Metrics {
                prefix: prefix.to_owned(),
            }
        }
    }

    impl wix_cluster::Plugin for Metrics {}
}

#[wix_cluster::main(
    workers = 4,
    plugins(
        Respawn(max_deaths = 5, within = "30s"),
        Graceful(
            timeout = "1.5s",
            delay = "250ms",
            max_draining = 3,
            hard_stop_after = "20s"
        ),
        LifecycleLog,
        Autoscale(min = 1, max = "auto", idle_for = "30s", high = 90),
        my_plugins::Metrics(prefix = "app"),
    ),
    without(Stall),
    single_process = "always",
    flavor = "multi_thread",
    worker_threads = 2,
    watch = false,
    header_read_timeout = "20s",
    idle_timeout = "1m",
    body_read_timeout = "45s",
    max_header_bytes = "32KiB",
)]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let _ = worker;
    Ok(())
}
