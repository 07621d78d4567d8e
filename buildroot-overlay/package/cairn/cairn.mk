################################################################################
#
# cairn
#
################################################################################

CAIRN_VERSION = 0.1.0
CAIRN_SITE = $(BR2_EXTERNAL_CAIRN_PATH)/..
CAIRN_SITE_METHOD = local
CAIRN_LICENSE = GPL-2.0+
CAIRN_CARGO_BUILD_OPTS = -p cairn --locked
CAIRN_BOARD ?= qemu-aarch64-virt

define CAIRN_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(@D)/target/$(RUSTC_TARGET_NAME)/release/cairn $(TARGET_DIR)/usr/bin/cairn
	ln -sf ../usr/bin/cairn $(TARGET_DIR)/sbin/init
	cp -a $(@D)/rootfs/files/. $(TARGET_DIR)/
	$(INSTALL) -D -m 0644 $(@D)/board/$(CAIRN_BOARD)/board.toml $(TARGET_DIR)/etc/cairn/board.toml
endef

$(eval $(cargo-package))
