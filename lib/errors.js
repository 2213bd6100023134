'use strict';
// The error classes of azure-iothub (azure-iot-common), exported as `errors`.
// Each is a real Error subclass: `instanceof Error` and `instanceof errors.X` both hold, and
// `name` is an own property, as in azure-iot-common (DeviceRegistrationFailedError is named
// 'ProvisioningRegistrationFailedError' there too).

function define(className, errorName) {
  const holder = {
    [className]: class extends Error {
      constructor(message) {
        super(message);
        this.name = errorName;
        this.message = message;
        Error.captureStackTrace(this, this.constructor);
      }
    },
  };
  return holder[className];
}

const names = [
  'ArgumentError',
  'ArgumentOutOfRangeError',
  'DeviceMaximumQueueDepthExceededError',
  'DeviceNotFoundError',
  'FormatError',
  'UnauthorizedError',
  'NotImplementedError',
  'NotConnectedError',
  'IotHubQuotaExceededError',
  'MessageTooLargeError',
  'InternalServerError',
  'ServiceUnavailableError',
  'IotHubNotFoundError',
  'IoTHubSuspendedError',
  'JobNotFoundError',
  'TooManyDevicesError',
  'ThrottlingError',
  'DeviceAlreadyExistsError',
  'DeviceMessageLockLostError',
  'InvalidEtagError',
  'InvalidOperationError',
  'PreconditionFailedError',
  'TimeoutError',
  'BadDeviceResponseError',
  'GatewayTimeoutError',
  'DeviceTimeoutError',
  'CloudToDeviceDetachedError',
  'DeviceMethodsDetachedError',
  'TwinDetachedError',
  'TwinRequestError',
  'OperationCancelledError',
  'DeviceRegistrationFailedError',
  'SecurityDeviceError',
];

for (const name of names) {
  const errorName = name === 'DeviceRegistrationFailedError' ? 'ProvisioningRegistrationFailedError' : name;
  exports[name] = define(name, errorName);
}
