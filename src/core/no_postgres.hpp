// Included first by every pure-core header. The core must stay free of PostgreSQL so
// it builds and unit-tests without a server. Two fences:
//  - this header fails the build when postgres.h was included by anything but the
//    PostgreSQL layer (src/pg/pg.hpp defines ATTENDANCE_PG_LAYER before including it);
//  - the Makefile compiles src/core/*.cpp without PostgreSQL's include directories, so
//    a core file that includes postgres.h does not compile at all.
#pragma once

#if (defined(PG_VERSION_NUM) || defined(POSTGRES_H) || defined(POSTGRES_FE_H)) && \
    !defined(ATTENDANCE_PG_LAYER)
#error "src/core must not include PostgreSQL headers (postgres.h); keep PostgreSQL code in src/pg"
#endif
