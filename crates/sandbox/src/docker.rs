//! The `docker` driver.
pub struct DockerDriver;
pub struct DockerOptions;
