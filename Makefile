# make plugin                                     the managed-plugin directory, no registry needed (debootstrap)
# make plugin BASE=python:3.11-slim-bookworm      the same from an official image, where a registry is reachable
# make plugin PLUGIN_DIR=/some/dir                 where to put it (default build/pynet-plugin)
# The docker commands go to the daemon DOCKER_HOST points to. See README, "Install as a managed plugin".
BASE ?= debootstrap
PLUGIN_DIR ?= build/pynet-plugin

.PHONY: plugin
plugin:
	plugin/build/build.sh --base $(BASE) --output $(PLUGIN_DIR)
