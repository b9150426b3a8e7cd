# nmbridge — build and install.
#
#   make                      swift build -c release --static-swift-stdlib
#   sudo make install         build, install, then create the user, the
#                             directories and reload udev/systemd
#   make install DESTDIR=/tmp/stage
#                             stage for packaging (no user creation, no reloads)
#   make install-files DESTDIR=... [BINDIR_SRC=dir]
#                             install already-built binaries from BINDIR_SRC
#                             (default .build/release); nothing is built
#   sudo make uninstall       remove what install put under PREFIX; keeps
#                             /etc/nmbridge and /var/lib/nmbridge (data)
#   make deb                  release build, then nmbridge_<version>-<rev>_<arch>.deb
#                             (docs/packaging.md); DEB_REVISION=N for a rebuild,
#                             BINDIR_SRC=dir to package binaries already built there
#                             (e.g. .build/debug, as the tests do), OUT_DIR=dir
#   make lintian              make deb, then lintian on the package
#   make version              print the version (Sources/NMBridgeCore/Version.swift)
#
# PREFIX=/usr by default. All systemd-related directories below are searched
# by systemd/udev both under /usr and /usr/local.

PREFIX        ?= /usr
DESTDIR       ?=
SYSCONFDIR    ?= /etc
BINDIR        ?= $(PREFIX)/bin
UNITDIR       ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR   ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR   ?= $(PREFIX)/lib/tmpfiles.d
UDEVRULESDIR  ?= $(PREFIX)/lib/udev/rules.d
CONFDIR       ?= $(SYSCONFDIR)/nmbridge
PROFILEDIR    ?= $(PREFIX)/share/nmbridge/profiles

SWIFT         ?= swift
INSTALL       ?= install
BINDIR_SRC    ?= .build/release
BINARIES      := nmbridged nmbridge
EXAMPLE_CONF  ?= docs/nmbridge.example.toml

# The one version: what `nmbridge --version` prints; the package adds a Debian revision.
VERSION       := $(shell sed -n 's/.*static let current = "\(.*\)".*/\1/p' Sources/NMBridgeCore/Version.swift)
DEB_REVISION  ?= 1
DEB_COMPRESS  ?= xz
OUT_DIR       ?= .
DEB_ARCH       = $(shell dpkg-architecture -qDEB_HOST_ARCH)
DEB_FILE       = $(OUT_DIR)/nmbridge_$(VERSION)-$(DEB_REVISION)_$(DEB_ARCH).deb

.PHONY: all build install install-files activate uninstall deb lintian version

all: build

build:
	$(SWIFT) build -c release --static-swift-stdlib

install: build
	$(MAKE) install-files BINDIR_SRC=.build/release
	@if [ -z "$(DESTDIR)" ]; then $(MAKE) activate; fi

install-files:
	@for b in $(BINARIES); do \
		if [ ! -x "$(BINDIR_SRC)/$$b" ]; then \
			echo "error: $(BINDIR_SRC)/$$b not found or not executable (run 'make build' or set BINDIR_SRC)" >&2; \
			exit 1; \
		fi; \
	done
	$(INSTALL) -d -m 0755 "$(DESTDIR)$(BINDIR)"
	$(INSTALL) -m 0755 $(addprefix $(BINDIR_SRC)/,$(BINARIES)) "$(DESTDIR)$(BINDIR)/"
	$(INSTALL) -d -m 0755 "$(DESTDIR)$(UNITDIR)"
	sed 's|/usr/bin/nmbridged|$(BINDIR)/nmbridged|g' systemd/nmbridged.service > "$(DESTDIR)$(UNITDIR)/nmbridged.service"
	chmod 0644 "$(DESTDIR)$(UNITDIR)/nmbridged.service"
	$(INSTALL) -m 0644 systemd/nmbridged-dicom.socket "$(DESTDIR)$(UNITDIR)/nmbridged-dicom.socket"
	$(INSTALL) -D -m 0644 systemd/nmbridge.sysusers "$(DESTDIR)$(SYSUSERSDIR)/nmbridge.conf"
	$(INSTALL) -D -m 0644 systemd/nmbridge.tmpfiles "$(DESTDIR)$(TMPFILESDIR)/nmbridge.conf"
	$(INSTALL) -D -m 0644 udev-rules/70-nmbridge.rules "$(DESTDIR)$(UDEVRULESDIR)/70-nmbridge.rules"
	$(INSTALL) -d -m 0755 "$(DESTDIR)$(PROFILEDIR)"
	$(INSTALL) -m 0644 Drivers/ModbusGantry/profiles/*.toml "$(DESTDIR)$(PROFILEDIR)/"
	@# The example config is installed once and never overwritten: an
	@# existing /etc/nmbridge/nmbridge.toml is the admin's. Group and mode
	@# are finished by tmpfiles.d/nmbridge.conf (root:nmbridge 0640), since
	@# the nmbridge group may not exist yet (or not in DESTDIR).
	@if [ ! -f "$(EXAMPLE_CONF)" ]; then \
		echo "note: $(EXAMPLE_CONF) not present, no configuration installed"; \
	elif [ -e "$(DESTDIR)$(CONFDIR)/nmbridge.toml" ]; then \
		echo "note: keeping existing $(DESTDIR)$(CONFDIR)/nmbridge.toml"; \
	else \
		echo "installing $(EXAMPLE_CONF) as $(DESTDIR)$(CONFDIR)/nmbridge.toml (0640)"; \
		$(INSTALL) -d -m 0750 "$(DESTDIR)$(CONFDIR)" && \
		$(INSTALL) -m 0640 "$(EXAMPLE_CONF)" "$(DESTDIR)$(CONFDIR)/nmbridge.toml"; \
	fi

# Live system only (DESTDIR empty): what a package's postinst would do.
# udev and systemd reloads are skipped where those daemons are not running.
activate:
	systemd-sysusers nmbridge.conf
	systemd-tmpfiles --create nmbridge.conf
	@if [ -S /run/udev/control ]; then \
		echo "udevadm control --reload && udevadm trigger --subsystem-match=tty --subsystem-match=usb"; \
		udevadm control --reload && udevadm trigger --subsystem-match=tty --subsystem-match=usb; \
	fi
	@if [ -d /run/systemd/system ]; then \
		echo "systemctl daemon-reload"; systemctl daemon-reload; \
		echo "next: edit $(CONFDIR)/nmbridge.toml, then: systemctl enable --now nmbridged.service"; \
	fi

version:
	@echo $(VERSION)

# Packages the binaries in BINDIR_SRC; builds them first when that is the release
# directory (the default), so a plain `make deb` is always current.
deb:
	@if [ "$(BINDIR_SRC)" = .build/release ]; then $(MAKE) --no-print-directory build; fi
	BINDIR_SRC="$(BINDIR_SRC)" VERSION="$(VERSION)" DEB_REVISION="$(DEB_REVISION)" OUT_DIR="$(OUT_DIR)" \
		DEB_COMPRESS="$(DEB_COMPRESS)" EXAMPLE_CONF="$(EXAMPLE_CONF)" \
		DEB_ALLOW_UNPACKAGED_LIBS="$(DEB_ALLOW_UNPACKAGED_LIBS)" packaging/build-deb

# The warnings kept are explained in docs/packaging.md; any error fails.
lintian: deb
	lintian --fail-on error --info $(DEB_FILE)

uninstall:
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		echo "systemctl disable --now nmbridged.service"; \
		systemctl disable --now nmbridged.service || true; \
	fi
	for b in $(BINARIES); do rm -f "$(DESTDIR)$(BINDIR)/$$b"; done
	rm -f "$(DESTDIR)$(UNITDIR)/nmbridged.service" "$(DESTDIR)$(UNITDIR)/nmbridged-dicom.socket"
	rm -f "$(DESTDIR)$(SYSUSERSDIR)/nmbridge.conf"
	rm -f "$(DESTDIR)$(TMPFILESDIR)/nmbridge.conf"
	rm -f "$(DESTDIR)$(UDEVRULESDIR)/70-nmbridge.rules"
	for p in Drivers/ModbusGantry/profiles/*.toml; do rm -f "$(DESTDIR)$(PROFILEDIR)/$${p##*/}"; done
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "note: $(CONFDIR), /var/lib/nmbridge (journal, received DICOM files) and the nmbridge user are kept; remove them by hand if intended"
