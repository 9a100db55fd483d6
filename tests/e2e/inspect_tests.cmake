# End-to-end test of the custom server example (docs/examples/smtp_redactor.cpp): `detour probe`
# against it on loopback, as a user would test a server of their own. Bounded by the probe's
# --deadline and the CTest TIMEOUT.
add_test(NAME "e2e: example smtp-redactor passes probe check and masks card numbers in SMTP"
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/example_smtp_redactor.sh
    $<TARGET_FILE:detour_example_smtp_redactor> $<TARGET_FILE:detour_cli>)
set_tests_properties("e2e: example smtp-redactor passes probe check and masks card numbers in SMTP"
  PROPERTIES LABELS "e2e;example" TIMEOUT 300)
