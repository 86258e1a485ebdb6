# Install rules and the Debian package (CPack), included from the top-level CMakeLists.txt.
#
#   cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release -DKVR_TESTS=OFF
#   cmake --build build-rel && (cd build-rel && cpack -G DEB)
#
# The binary's own install rule lives next to its target (reconciler/CMakeLists.txt); everything
# else that the package carries is listed here. Only kvreconcile is installed: azsim, the tests
# and the benchmarks have no install rules. Dependencies are computed from the binary by
# dpkg-shlibdeps, so a package built from a sanitizer build honestly depends on libasan; ship
# packages from a release build (see packaging/README.md).
include(GNUInstallDirs)

set(KVR_PKG_SRC ${CMAKE_CURRENT_LIST_DIR})
set(KVR_PKG_BIN ${CMAKE_BINARY_DIR}/packaging)

# The man page, gzipped as Debian policy wants (-n: no name or time stamp, reproducible).
find_program(KVR_GZIP gzip)
if(NOT KVR_GZIP)
    message(FATAL_ERROR "gzip not found (needed for the man page)")
endif()
add_custom_command(
    OUTPUT ${KVR_PKG_BIN}/kvreconcile.1.gz
    COMMAND ${CMAKE_COMMAND} -E make_directory ${KVR_PKG_BIN}
    COMMAND ${CMAKE_COMMAND} -E copy ${CMAKE_SOURCE_DIR}/docs/kvreconcile.1 ${KVR_PKG_BIN}/kvreconcile.1
    COMMAND ${KVR_GZIP} -9nf ${KVR_PKG_BIN}/kvreconcile.1
    DEPENDS ${CMAKE_SOURCE_DIR}/docs/kvreconcile.1
    COMMENT "gzip kvreconcile.1"
    VERBATIM)
add_custom_target(kvreconcile_man ALL DEPENDS ${KVR_PKG_BIN}/kvreconcile.1.gz)

install(FILES ${KVR_PKG_BIN}/kvreconcile.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${KVR_PKG_SRC}/completion/kvreconcile.bash
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME kvreconcile)
install(FILES ${KVR_PKG_SRC}/completion/_kvreconcile
        DESTINATION ${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions)
# relative to the prefix: /usr/lib/systemd/system in the package (Debian 12 has merged /usr)
install(FILES ${KVR_PKG_SRC}/systemd/kvreconcile-watch.service DESTINATION lib/systemd/system)
install(FILES ${KVR_PKG_SRC}/systemd/kvreconcile.sysusers
        DESTINATION lib/sysusers.d RENAME kvreconcile.conf)
install(FILES ${KVR_PKG_SRC}/systemd/kvreconcile.env.example ${CMAKE_SOURCE_DIR}/README.md
              ${CMAKE_SOURCE_DIR}/docs/desired-state.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/examples DESTINATION ${CMAKE_INSTALL_DOCDIR})

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME kvreconcile)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "kvreconcile")
set(KVR_PACKAGE_MAINTAINER "kvreconcile maintainers <maintainers@kvreconcile.invalid>"
    CACHE STRING "Maintainer field of the Debian package")
set(CPACK_PACKAGE_CONTACT "${KVR_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "keep an Azure Key Vault estate the way a Git repository describes it")
# CPack puts the summary on the Description: line and this under it
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "kvreconcile reconciles key vaults, keys and their rotation policies, secrets, Entra apps and\n\
their client secrets, role assignments and the encryption profiles of a consuming service with\n\
a desired state in YAML: validate, plan (text, JSON, Markdown for pull requests), apply with\n\
gates, and watch (a systemd service is included).")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# libc6, libcurl4, libjansson4, libssl3, libyaml-0-2 come from dpkg-shlibdeps; TLS to Azure
# needs the CA bundle, which no library pulls in.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "ca-certificates")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${KVR_PKG_SRC}/debian/postinst ${KVR_PKG_SRC}/debian/prerm ${KVR_PKG_SRC}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_SOURCE_GENERATOR TGZ)
set(CPACK_SOURCE_IGNORE_FILES "/\\\\.git/" "/build[^/]*/" "/node_modules/")
include(CPack)
