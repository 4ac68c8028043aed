// String literals in plugin settings become durations and sizes at compile time; other
// strings and other expressions are passed as written. Each setter checks the value it
// gets when the builder runs.
use std::time::Duration;

mod my_plugins {
    use std::time::Duration;

    #[derive(Default)]
    pub struct Checked;

    impl Checked {
        pub fn interval(self, interval: Duration) -> Self {
            assert_eq!(interval, Duration::from_millis(1500));
            self
        }

        pub fn fine(self, fine: Duration) -> Self {
            assert_eq!(fine, Duration::from_micros(250));
            self
        }

        pub fn long(self, long: Duration) -> Self {
            assert_eq!(long, Duration::from_secs(2 * 3600));
            self
        }

        pub fn combined(self, combined: Duration) -> Self {
            assert_eq!(combined, Duration::from_secs(90));
            self
        }

        pub fn zero(self, zero: Duration) -> Self {
            assert_eq!(zero, Duration::ZERO);
            self
        }

        pub fn buffer(self, buffer: u64) -> Self {
            assert_eq!(buffer, 512 * 1024 * 1024);
            self
        }

        pub fn disk(self, disk: u64) -> Self {
            assert_eq!(disk, 2_000_000_000);
            self
        }

        pub fn addr(self, addr: &str) -> Self {
            assert_eq!(addr, "localhost:9090");
            self
        }

        pub fn ip(self, ip: &str) -> Self {
            assert_eq!(ip, "127.0.0.1:9090");
            self
        }

        pub fn grace(self, grace: Duration) -> Self {
            assert_eq!(grace, Duration::from_secs(5));
            self
        }
    }

    impl wix_cluster::Plugin for Checked {}
}

#[wix_cluster::main(plugins(
    Respawn(max_deaths = 5, within = "30s"),
    Graceful(timeout = "1.5s"),
    my_plugins::Checked(
        interval = "1.5 s",
        fine = "250µs",
        long = "2h",
        combined = "1m 30s",
        zero = "0ms",
        buffer = "512MiB",
        disk = "2GB",
        addr = "localhost:9090",
        ip = "127.0.0.1:9090",
        grace = Duration::from_secs(5),
    ),
))]
async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
    let _ = worker;
    Ok(())
}
