#!/usr/bin/env python3
"""docker-py against polisd: pull, a run with output, a detached container listed and removed.

Usage: docker_py.py unix:///path/to/polis.sock REGISTRY/IMAGE:TAG

Prints one line per step; integration/tests/polisd/main.rs compares them. Any failure is an exception (non-zero exit).
"""

import sys

import docker


def main() -> None:
    url, image = sys.argv[1], sys.argv[2]
    # version="auto": docker-py asks GET /version and uses the server's ApiVersion (1.41).
    client = docker.DockerClient(base_url=url, version="auto", timeout=120)
    print("platform", client.version()["Platform"]["Name"])
    repository, tag = image.rsplit(":", 1)
    pulled = client.images.pull(repository, tag=tag)
    print("pulled", " ".join(pulled.tags))
    # create, start, wait, logs (stdout only by default), remove
    output = client.containers.run(
        image, ["sh", "-c", "echo hello from docker-py; echo not-stdout >&2"], remove=True
    )
    print("output", output.decode().strip())
    c = client.containers.run(image, ["sleep", "300"], detach=True, name="pyc")
    c.reload()
    print("status", c.status)
    print("listed", ",".join(sorted(x.name for x in client.containers.list())))
    c.kill()
    print("exit", c.wait(timeout=60)["StatusCode"])
    c.remove()
    print("remaining", len(client.containers.list(all=True)))


if __name__ == "__main__":
    main()
