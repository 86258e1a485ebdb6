# Unit tests of the Azure client layer (no network), and, when the simulator is built, the
# end-to-end check of the HTTP engine and credentials against azsim.
if(TARGET kvr_azure)
    add_executable(test_azure test_azure.c)
    target_link_libraries(test_azure PRIVATE kvr_azure kvr_util OpenSSL::Crypto PkgConfig::CMOCKA)
    target_include_directories(test_azure PRIVATE ${PROJECT_SOURCE_DIR}/reconciler/providers/azure)
    add_test(NAME unit_azure COMMAND test_azure)

    # The list-page splitter (jsonpage.c): every page reads as a parse of its whole text would.
    add_executable(test_jsonpage test_jsonpage.c)
    target_link_libraries(test_jsonpage PRIVATE kvr_azure kvr_util PkgConfig::CMOCKA)
    target_include_directories(test_jsonpage PRIVATE
                               ${PROJECT_SOURCE_DIR}/reconciler/providers/azure)
    add_test(NAME unit_jsonpage COMMAND test_jsonpage)
    set_tests_properties(unit_jsonpage PROPERTIES LABELS unit TIMEOUT 120)

    # The fast JSON parser (jsonparse.c): whatever the text, what json_loadb makes of it.
    add_executable(test_jsonparse test_jsonparse.c)
    target_link_libraries(test_jsonparse PRIVATE kvr_azure kvr_util PkgConfig::CMOCKA)
    target_include_directories(test_jsonparse PRIVATE
                               ${PROJECT_SOURCE_DIR}/reconciler/providers/azure)
    add_test(NAME unit_jsonparse COMMAND test_jsonparse)
    set_tests_properties(unit_jsonparse PROPERTIES LABELS unit TIMEOUT 120)
endif()

# The simulator is added after tests/unit, so test for its list file rather than its target.
if(TARGET kvr_azure AND EXISTS ${PROJECT_SOURCE_DIR}/tests/azsim/CMakeLists.txt)
    add_executable(azure_e2e ${PROJECT_SOURCE_DIR}/tests/e2e/azure_e2e.c)
    target_link_libraries(azure_e2e PRIVATE kvr_azure kvr_util OpenSSL::Crypto)
    target_include_directories(azure_e2e PRIVATE ${PROJECT_SOURCE_DIR}/reconciler/providers/azure)
    add_test(NAME e2e_azure
             COMMAND bash ${PROJECT_SOURCE_DIR}/tests/e2e/azure_e2e.sh $<TARGET_FILE:azsim>
                     $<TARGET_FILE:azure_e2e>)
    set_tests_properties(e2e_azure PROPERTIES TIMEOUT 180)
endif()

# The Azure provider's write side: every kvr_op kind through the provider table, against azsim.
if(TARGET kvr_providers AND EXISTS ${PROJECT_SOURCE_DIR}/tests/azsim/CMakeLists.txt)
    add_executable(azure_ops_e2e ${PROJECT_SOURCE_DIR}/tests/e2e/azure_ops_e2e.c)
    target_link_libraries(azure_ops_e2e PRIVATE kvr_providers kvr_azure kvr_model kvr_util
                          OpenSSL::Crypto)
    add_test(NAME e2e_azure_ops
             COMMAND bash ${PROJECT_SOURCE_DIR}/tests/e2e/azure_ops_e2e.sh $<TARGET_FILE:azsim>
                     $<TARGET_FILE:azure_ops_e2e>)
    set_tests_properties(e2e_azure_ops PROPERTIES TIMEOUT 180 LABELS azsim)
endif()
