# mcr.mk: build a plain-Makefile C project with mcr-cc.
#
#     include path/to/mcr/crates/mcr-cc/mcr.mk
#
# anywhere in the project's Makefile. Every $(CC) of the build (explicit
# rules, make's implicit %.o: %.c rule and the link) is then mcr-cc, even if
# the Makefile or the command line sets CC itself. MCR_CC names the mcr-cc
# to run (default: the one on PATH): `make MCR_CC=/opt/mcr/bin/mcr-cc`.
# Proof: cargo test -p mcr-cc --test driver plain_makefile_includes_mcr_mk
MCR_CC ?= mcr-cc
override CC := $(MCR_CC)
