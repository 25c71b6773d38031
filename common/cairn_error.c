/* cairn_error.c — messages and names for the error table in cairn_error.h. */
#include "common/cairn_error.h"

const char *cairn_strerror(int code)
{
	switch (code) {
	case CAIRN_OK:
		return "success";
#define CAIRN_ERROR_MSG(name, value, msg)                                                          \
	case name:                                                                                 \
		return msg;
		CAIRN_ERRORS(CAIRN_ERROR_MSG)
#undef CAIRN_ERROR_MSG
	}
	return "unknown error";
}

const char *cairn_errname(int code)
{
	switch (code) {
	case CAIRN_OK:
		return "CAIRN_OK";
#define CAIRN_ERROR_NAME(name, value, msg)                                                         \
	case name:                                                                                 \
		return #name;
		CAIRN_ERRORS(CAIRN_ERROR_NAME)
#undef CAIRN_ERROR_NAME
	}
	return "CAIRN_UNKNOWN";
}
