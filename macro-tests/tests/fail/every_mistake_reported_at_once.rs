// Mistakes in the arguments, in a plugin's settings and in the function, all in one
// compile.
#[wix_cluster::main(
    workers = 0,
    threads = 2,
    flavor = "fast",
    plugins(Respawn(max_death = 5), Graceful, Respawn),
    workers = 3
)]
fn main() -> std::io::Result<()> {
    Ok(())
}
