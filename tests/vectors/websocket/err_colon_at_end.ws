# a colon ending the line
# expect: error ws_bad_header_line 9
/x\r\n
host:\r\n
