//! The space polisd's objects take (`GET /system/df`, polis.v1 System/DiskUsage): images (one per ID, with all its
//! names), the containers' writable layers, the volumes' data; what is in use and what removing the rest would free,
//! as `docker system df` counts them (docker/cli's disk usage formatter: an image is active when a container uses
//! it, a container when it runs or is paused, a volume when a container mounts it).

use super::Core;
use super::error::Result;
use super::images::{self, Image, familiar_name};
use super::record::ContainerRecord;
use super::volumes::{VolumeMeta, dir_size};

/// An image and what it takes.
#[derive(Debug, Clone)]
pub struct ImageUsage {
    /// The image (under its first name).
    pub image: Image,
    /// Its names, in Docker's familiar form.
    pub names: Vec<String>,
    /// `NAME@DIGEST` of each name.
    pub repo_digests: Vec<String>,
    pub size: u64,
    /// The containers made from it.
    pub containers: usize,
}

/// A container and its writable layer's size.
#[derive(Debug, Clone)]
pub struct ContainerUsage {
    pub record: ContainerRecord,
    pub size_rw: u64,
}

/// A volume, its data's size and the containers that mount it.
#[derive(Debug, Clone)]
pub struct VolumeUsage {
    pub volume: VolumeMeta,
    pub size: u64,
    pub users: usize,
}

#[derive(Debug, Clone, Default)]
pub struct DiskUsage {
    pub images: Vec<ImageUsage>,
    pub containers: Vec<ContainerUsage>,
    pub volumes: Vec<VolumeUsage>,
}

impl DiskUsage {
    /// Every image's size (Docker's `LayersSize`).
    pub fn images_size(&self) -> u64 {
        self.images.iter().map(|i| i.size).sum()
    }

    /// What removing the images no container uses would free.
    pub fn reclaimable_images(&self) -> u64 {
        self.images
            .iter()
            .filter(|i| i.containers == 0)
            .map(|i| i.size)
            .sum()
    }

    pub fn active_images(&self) -> usize {
        self.images.iter().filter(|i| i.containers > 0).count()
    }

    /// The writable layers of every container.
    pub fn containers_size(&self) -> u64 {
        self.containers.iter().map(|c| c.size_rw).sum()
    }

    /// What removing the containers that do not run would free.
    pub fn reclaimable_containers(&self) -> u64 {
        self.containers
            .iter()
            .filter(|c| !c.record.state.status.is_live())
            .map(|c| c.size_rw)
            .sum()
    }

    /// Containers running or paused.
    pub fn active_containers(&self) -> usize {
        self.containers
            .iter()
            .filter(|c| c.record.state.status.is_live())
            .count()
    }

    pub fn volumes_size(&self) -> u64 {
        self.volumes.iter().map(|v| v.size).sum()
    }

    /// What removing the volumes no container uses would free.
    pub fn reclaimable_volumes(&self) -> u64 {
        self.volumes
            .iter()
            .filter(|v| v.users == 0)
            .map(|v| v.size)
            .sum()
    }

    pub fn active_volumes(&self) -> usize {
        self.volumes.iter().filter(|v| v.users > 0).count()
    }
}

/// Reads what polisd's objects take (blocking: walks the writable layers and volumes).
pub fn disk_usage(core: &Core) -> Result<DiskUsage> {
    let records = core.db.all()?;
    let mut usage = DiskUsage::default();
    for image in images::list(&core.store)? {
        let name = familiar_name(&image.stored.name);
        let digest = image.repo_digest();
        if let Some(known) = usage.images.iter_mut().find(|i| i.image.id == image.id) {
            known.names.push(name);
            known.repo_digests.push(digest);
            continue;
        }
        usage.images.push(ImageUsage {
            size: image.size(&core.store),
            containers: records.iter().filter(|r| r.image_id == image.id).count(),
            names: vec![name],
            repo_digests: vec![digest],
            image,
        });
    }
    usage.containers = records
        .into_iter()
        .map(|record| ContainerUsage {
            size_rw: dir_size(&record.bundle.join(".overlay/upper")),
            record,
        })
        .collect();
    for volume in core.volumes()? {
        usage.volumes.push(VolumeUsage {
            size: dir_size(&core.volume_data(&volume.name)),
            users: core.volume_users(&volume.name)?.len(),
            volume,
        });
    }
    Ok(usage)
}
