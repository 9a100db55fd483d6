# the root path and no header
# expect: complete 3
# field: resource = /
# field: header_count = 0
# field: host = (none)
/\r\n
