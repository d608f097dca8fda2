"""How newsdedup talks to Redis: the transaction builder, the Lua scripts and record encoding.

Key names live in :mod:`newsdedup.keys`; the scripts are ``lua/*.lua`` files shipped as
package data; nothing stored is ever pickled.
"""
