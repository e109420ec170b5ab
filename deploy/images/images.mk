# Function images (teemate, native, strawman) as OCI root filesystems and Docker images, built
# from this machine's files with no registry. Included by the root Makefile.
IMAGES_DIR ?= $(STATE)/images

.PHONY: images
images: ## Build the function images into $(IMAGES_DIR) (and docker import them when an engine runs)
	@IMAGES_DIR=$(IMAGES_DIR) GO=$(GO) deploy/images/build.sh

.PHONY: dockerd
dockerd: ## Start Debian's dockerd when none answers (needed by the docker sandbox backend)
	@deploy/dev/start-dockerd.sh
