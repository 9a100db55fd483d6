# a header line without a colon
# expect: error ws_bad_header_line 8
/x\r\n
host example.com\r\n
