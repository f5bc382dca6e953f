# The installable package: `cmake --install <build> --prefix P` puts
#   P/include/vmm/{vmm.h,machine.hpp,machine_config.hpp}   the public headers, nothing internal
#   P/lib/libvmm.a, libvmm.so -> libvmm.so.0 -> libvmm.so.0.1.0
#   P/lib/cmake/vmm/{vmmConfig,vmmConfigVersion,vmmTargets}.cmake   vmm::vmm (shared), vmm::vmm_static
#   P/lib/pkgconfig/vmm.pc
#   P/bin/vmm
# Both config files are relocatable: they find the prefix from where they are installed.
include(CMakePackageConfigHelpers)

set(VMM_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/vmm)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/vmm/include/vmm
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h" PATTERN "*.hpp")
install(TARGETS libvmm libvmm_shared EXPORT vmmTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS vmm RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(EXPORT vmmTargets NAMESPACE vmm:: DESTINATION ${VMM_CMAKE_DIR})

# A header-only dependency of libvmm's internals still shows up in vmm::vmm_static's link
# interface (as $<LINK_ONLY:...>), so consumers must be able to find it.
get_target_property(vmm_static_links libvmm LINK_LIBRARIES)
set(VMM_FIND_NLOHMANN_JSON "")
if("nlohmann_json::nlohmann_json" IN_LIST vmm_static_links)
  set(VMM_FIND_NLOHMANN_JSON "find_dependency(nlohmann_json)")
endif()

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/vmmConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/vmmConfig.cmake
                              INSTALL_DESTINATION ${VMM_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/vmmConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/vmmConfig.cmake ${PROJECT_BINARY_DIR}/vmmConfigVersion.cmake
        DESTINATION ${VMM_CMAKE_DIR})

file(RELATIVE_PATH VMM_PC_TO_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
string(REGEX REPLACE "/$" "" VMM_PC_TO_PREFIX "${VMM_PC_TO_PREFIX}")
configure_file(${CMAKE_CURRENT_LIST_DIR}/vmm.pc.in ${PROJECT_BINARY_DIR}/vmm.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/vmm.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
