# a colon not followed by a space
# expect: error ws_bad_header_line 9
/x\r\n
host:example.com\r\n
