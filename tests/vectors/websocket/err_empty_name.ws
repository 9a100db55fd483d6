# a line starting with the colon
# expect: error ws_bad_header_line 4
/x\r\n
: v\r\n
