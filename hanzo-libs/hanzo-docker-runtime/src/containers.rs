//! Container operations shared by tools and services.

use crate::describe;
use bollard::Docker;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use hanzo_compute::ComputeError;
use std::collections::HashMap;

/// Removes a container, running or not, with its anonymous volumes.
pub(crate) async fn remove(docker: &Docker, id: &str) -> Result<(), bollard::errors::Error> {
    docker
        .remove_container(
            id,
            Some(
                RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .v(true)
                    .build(),
            ),
        )
        .await
}

/// Every container (running or not) carrying all of `labels` (`key=value` each).
pub(crate) async fn labelled(
    docker: &Docker,
    labels: Vec<String>,
) -> Result<Vec<ContainerSummary>, ComputeError> {
    let filters = HashMap::from([("label", labels)]);
    docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|e| ComputeError::Unavailable(describe(&e)))
}
