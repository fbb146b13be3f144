# PGXS build of the extension (attendance.so, install scripts) and its pg_regress and
# isolation suites. The pure C++ core and its unit tests, the proxy and the CLI are
# built by CMakeLists.txt.
EXTENSION  = attendance
MODULE_big = attendance
PGFILEDESC = "attendance - LiveKit webhooks into meeting attendance"

# The version's one home is default_version in attendance.control.
ATTENDANCE_VERSION := $(shell sed -n "s/^default_version = '\([0-9.]*\)'$$/\1/p" attendance.control)
ifeq ($(ATTENDANCE_VERSION),)
$(error attendance.control names no default_version)
endif

# The install script of the current version is built into sql/generated from the topical
# sources in sql/src (read in name order; docs/development.md, "The SQL scripts"), so that
# CREATE EXTENSION runs one script, not the first version's and every upgrade. The scripts
# in sql/ (the first version's full script, every upgrade script) are installed as they
# are; those of released versions are never edited (sql/released.sha256).
SQL_SOURCES    = $(sort $(wildcard sql/src/*.sql))
FULL_SCRIPT    = sql/generated/$(EXTENSION)--$(ATTENDANCE_VERSION).sql
DATA_built     = $(FULL_SCRIPT)
DATA           = $(sort $(wildcard sql/attendance--*.sql))

CORE_SRCS  = $(sort $(wildcard src/core/*.cpp))
PG_SRCS    = $(sort $(wildcard src/pg/*.cpp))
OBJS       = $(CORE_SRCS:.cpp=.o) $(PG_SRCS:.cpp=.o)

# pg_regress: test/sql/<name>.sql against test/expected/<name>.out, in name order (some
# tests share the extension's state, so the order is the run order).
REGRESS      = $(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql)))
REGRESS_OPTS = --inputdir=test
ISOLATION_SPECS = $(patsubst test/isolation/specs/%.spec,%,$(sort $(wildcard test/isolation/specs/*.spec)))

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)

# JIT bitcode is not built for C++20 sources.
override with_llvm = no

include $(PGXS)

# C++20, warnings as errors; PostgreSQL's headers are system headers so that only our
# own code is held to -Werror.
override CXXFLAGS += -std=c++20 -fPIC -Wall -Wextra -Werror -Wno-missing-field-initializers
# GCC 12 reports false positives on std::optional in -O2 builds.
override CXXFLAGS += -Wno-maybe-uninitialized
# Objects depend on the headers they include (a changed struct must rebuild its users).
override CXXFLAGS += -MMD -MP
-include $(OBJS:.o=.d)
EXTRA_CLEAN += $(OBJS:.o=.d) sql/generated
override CPPFLAGS := -Isrc -isystem $(includedir_server) -isystem $(includedir_internal) $(CPPFLAGS)
SHLIB_LINK += -lcrypto -lstdc++
override CPPFLAGS += -DATTENDANCE_VERSION='"$(ATTENDANCE_VERSION)"'
$(PG_SRCS:.cpp=.o): attendance.control

# The pure core is compiled without PostgreSQL's include directories: it cannot
# include postgres.h even by accident.
src/core/%.o: override CPPFLAGS := -Isrc -D_GNU_SOURCE

.PHONY: isolation-installcheck
isolation-installcheck:
	$(pg_isolation_regress_installcheck) --inputdir=test/isolation --outputdir=test/isolation/output_iso \
	  $(ISOLATION_SPECS)

clean: clean-attendance
.PHONY: clean-attendance
clean-attendance:
	rm -rf test/isolation/output_iso

# The install script: a header, then each source with its name.
$(FULL_SCRIPT): $(SQL_SOURCES) attendance.control Makefile
	@mkdir -p $(@D)
	{ printf '%s\n' '-- attendance $(ATTENDANCE_VERSION): the install script, made by the Makefile from sql/src/*.sql (edit those).' \
	    '\echo Use "CREATE EXTENSION attendance" to load this file. \quit'; \
	  for f in $(SQL_SOURCES); do printf '\n-- ---- %s ----\n' "$$f"; cat "$$f"; done; } >$@.tmp
	mv $@.tmp $@
